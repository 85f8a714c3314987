public import Foundation

/// Times as messages show them, in the shop's own zone (`2026-12-01 23:59`): the one format of the emails, the SMS,
/// the merchant notice and the preview, so that the preview shows what customers will read.
public enum ShopTime {
    /// `date` in the time zone named `timeZone` (UTC when the name is unknown), as `yyyy-MM-dd HH:mm`.
    public static func format(_ date: Date, timeZone: String) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: timeZone) ?? TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        return formatter.string(from: date)
    }
}

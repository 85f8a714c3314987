import ArgumentParser
import CoupondDaemon
import Foundation
import Messages
import Postgres
import Storage

struct ScheduleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Schedules a coupon send to a customer group.",
        discussion: """
            The time must be on the hour of the shop's time zone and at least 2 hours from now; the coupon must be \
            a published "get coupon link" coupon for all customers, not expired, with more receives left than the \
            group has customers. The database checks all of this; a refusal names the rule (exit code 65).

            Examples:
              coupond schedule --shop 1 --group 7 --coupon 3 --channels email,sms --at "2026-12-01 10:00"
              coupond schedule --shop 1 --group 7 --coupon 3 --channels sms --at 2026-12-01T04:30:00Z
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Shop id.") var shop: Int64
    @Option(help: "Customer group id.") var group: Int64
    @Option(help: "Coupon id.") var coupon: Int64

    @Option(
        help: ArgumentHelp(
            "Channels, comma-separated: email, sms or email,sms.",
            valueName: "channels"
        )
    )
    var channels: String

    @Option(
        help: ArgumentHelp(
            """
            When to send: "YYYY-MM-DD HH:MM" in the shop's time zone, or an ISO 8601 time with Z or an offset.
            """,
            valueName: "time"
        )
    )
    var at: String

    @Flag(help: "Print the new send as JSON.") var json = false

    func validate() throws {
        _ = try parsedChannels()
        _ = try parsedTime()
    }

    func parsedChannels() throws -> (email: Bool, sms: Bool) {
        let names = channels.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let unknown = names.filter { $0 != "email" && $0 != "sms" }
        guard unknown.isEmpty, !names.isEmpty else {
            throw ValidationError("--channels must be email, sms or email,sms (got \"\(channels)\")")
        }
        return (names.contains("email"), names.contains("sms"))
    }

    func parsedTime() throws -> ScheduledTime {
        guard let time = ScheduleTimeParser.parse(at) else {
            throw ValidationError(
                "--at must be \"YYYY-MM-DD HH:MM\" (shop time) or ISO 8601 with Z or an offset (got \"\(at)\")"
            )
        }
        return time
    }

    func run() throws {
        try reportingFailures {
            let channels = try parsedChannels()
            let configuration = try global.loadConfiguration()
            let connection = try global.connect(configuration)
            defer { connection.close() }
            if channels.sms { try refuseTooLongSMS(configuration, connection) }
            let send = try SendStore(connection: connection).schedule(
                SendRequest(
                    shopID: shop,
                    groupID: group,
                    couponID: coupon,
                    email: channels.email,
                    sms: channels.sms,
                    time: try parsedTime()
                )
            )
            print(json ? OutputFormat.json(send) : OutputFormat.details(send))
        }
    }
}

extension ScheduleCommand {
    /// Refuses an SMS send whose text, for the group's longest-named member in any locale's templates, is over the
    /// 1,600 characters providers take: the templates and the coupon are known now, and every such SMS would fail at
    /// the hour.
    func refuseTooLongSMS(_ configuration: Configuration, _ connection: PostgresConnection) throws {
        let templates: LocalizedTemplates
        do {
            templates = try LocalizedTemplates(
                directory: configuration.templatesDirectory,
                defaultLanguage: configuration.templatesLanguage
            )
        } catch let error as TemplateError {
            throw CommandFailure(.config, error.description)
        }
        let source = try PreviewSource.load(
            on: connection,
            shopID: shop,
            groupID: group,
            couponID: coupon,
            customerID: try PreviewSource.longestNamedMember(on: connection, groupID: group)
        )
        for locale in [nil] + templates.byLocale.keys.sorted() {
            let output = PreviewCommand.render(
                source,
                templates: templates,
                price: nil,
                shortLinks: configuration.shortLinks,
                locale: locale
            )
            if SMSSegments.isTooLong(output.smsText) {
                throw CommandFailure(.refused, PreviewCommand.tooLong(characters: output.smsText.unicodeScalars.count))
            }
        }
    }
}

/// Reads the `--at` forms: shop-local wall-clock time, or an instant with `Z` or an offset.
enum ScheduleTimeParser {
    private static let localPattern = #"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$"#
    private static let instantPattern = #"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}(:?\d{2})?)$"#

    static func parse(_ text: String) -> ScheduledTime? {
        if text.range(of: localPattern, options: .regularExpression) != nil {
            return .shopLocal(text.replacingOccurrences(of: "T", with: " "))
        }
        guard text.range(of: instantPattern, options: .regularExpression) != nil else { return nil }
        var normalized = text.replacingOccurrences(of: " ", with: "T")
        // ISO8601DateFormatter wants seconds and a colon in the offset.
        if normalized.range(of: #"T\d{2}:\d{2}(Z|[+-])"#, options: .regularExpression) != nil {
            normalized = normalized.replacingOccurrences(
                of: #"(T\d{2}:\d{2})"#,
                with: "$1:00",
                options: .regularExpression
            )
        }
        if let range = normalized.range(of: #"[+-]\d{4}$"#, options: .regularExpression) {
            let offset = normalized[range]
            normalized.replaceSubrange(range, with: offset.prefix(3) + ":" + offset.suffix(2))
        } else if normalized.range(of: #"[+-]\d{2}$"#, options: .regularExpression) != nil {
            normalized += ":00"
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: normalized).map(ScheduledTime.instant)
    }
}

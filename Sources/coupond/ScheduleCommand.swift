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

            With --sms-budget, the send's SMS may cost at most that much, in the shop's currency: scheduling is \
            refused when the exact cost (every customer's own SMS, as coupond preview counts it) is over it, and at \
            the hour the engine sends no SMS that would go over it.

            Examples:
              coupond schedule --shop 1 --group 7 --coupon 3 --channels email,sms --at "2026-12-01 10:00"
              coupond schedule --shop 1 --group 7 --coupon 3 --channels sms --at 2026-12-01T04:30:00Z
              coupond schedule --shop 1 --group 7 --coupon 3 --channels sms --at "2026-12-01 10:00" --sms-budget 250
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

    @Option(
        help: ArgumentHelp(
            "Most the send's SMS may cost, in the shop's currency (needs sms.price_per_segment).",
            valueName: "amount"
        )
    )
    var smsBudget: String?

    @Flag(help: "Print the new send as JSON.") var json = false

    func validate() throws {
        let channels = try parsedChannels()
        _ = try parsedTime()
        if smsBudget != nil {
            _ = try parsedBudget()
            guard channels.sms else { throw ValidationError("--sms-budget needs sms among --channels") }
        }
    }

    func parsedBudget() throws -> Decimal? {
        guard let smsBudget else { return nil }
        guard let budget = Configuration.price(smsBudget), budget > 0 else {
            throw ValidationError("--sms-budget must be an amount above 0 such as 250 or 12.50 (got \"\(smsBudget)\")")
        }
        return budget
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
            let budget = try parsedBudget()
            if budget != nil && configuration.smsPricePerSegment == nil {
                throw CommandFailure(
                    .config,
                    "--sms-budget needs sms.price_per_segment in the configuration, to know what a segment costs"
                )
            }
            let shape = channels.sms ? try checkedSMSShape(configuration, connection) : nil
            let send = try SendStore(connection: connection).schedule(
                SendRequest(
                    shopID: shop,
                    groupID: group,
                    couponID: coupon,
                    email: channels.email,
                    sms: channels.sms,
                    time: try parsedTime(),
                    smsBudget: budget,
                    smsShape: shape?.json
                )
            )
            print(json ? OutputFormat.json(send) : OutputFormat.details(send))
        }
    }
}

extension ScheduleCommand {
    /// Refuses an SMS send whose text, for the group's longest-named member in any locale's templates, is over the
    /// 1,600 characters providers take: the templates and the coupon are known now, and every such SMS would fail at
    /// the hour. Returns the send's SMS shape, which the send keeps so that its exact cost can be counted.
    func checkedSMSShape(_ configuration: Configuration, _ connection: PostgresConnection) throws -> SMSShape? {
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
        return PreviewCommand.smsShape(
            source,
            templates: templates,
            price: configuration.smsPricePerSegment,
            shortLinks: configuration.shortLinks
        )
    }
}

/// Reads the `--at` forms: shop-local wall-clock time, or an instant with `Z` or an offset. A date or time that does
/// not exist (`2026-13-45`, `25:00`) or an offset beyond the ±14:00 any zone uses is refused here, with the usage
/// error, rather than by PostgreSQL or as a send at a wrong instant.
enum ScheduleTimeParser {
    private static let pattern =
        #"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?(Z|([+-])(\d{2})(?::?(\d{2}))?)?$"#

    static func parse(_ text: String) -> ScheduledTime? {
        guard let expression = try? NSRegularExpression(pattern: pattern),
            let match = expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text))
        else { return nil }
        func group(_ index: Int) -> String? {
            Range(match.range(at: index), in: text).map { String(text[$0]) }
        }
        func number(_ index: Int) -> Int? { group(index).flatMap { Int($0) } }
        guard let year = number(1), let month = number(2), let day = number(3), let hour = number(4),
            let minute = number(5)
        else { return nil }
        let second = number(6) ?? 0
        var components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        // A date that does not exist rolls over in Calendar: it exists only if it comes back as written.
        guard year >= 1, (1...12).contains(month), (0...23).contains(hour), (0...59).contains(minute),
            (0...59).contains(second),
            let utc = calendar.date(from: components),
            calendar.dateComponents([.year, .month, .day], from: utc).day == day
        else { return nil }
        guard let zone = group(7) else { return .shopLocal(text.replacingOccurrences(of: "T", with: " ")) }
        if zone == "Z" { return .instant(utc) }
        guard let offsetHours = number(9) else { return nil }
        let offsetMinutes = number(10) ?? 0
        let offset = offsetHours * 60 + offsetMinutes
        guard offsetMinutes < 60, offset <= 14 * 60 else { return nil }
        components.minute = minute - (group(8) == "-" ? -offset : offset)
        return calendar.date(from: components).map(ScheduledTime.instant)
    }
}

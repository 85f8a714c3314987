import ArgumentParser
import CoupondDaemon
import Foundation
import Postgres
import Storage

struct RetryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Schedules a send of a finished send's coupon to just the customers it failed.",
        discussion: """
            The new send goes to the same group with the same coupon, only to the customers the earlier send \
            failed who are still members at its hour, and only on the channels that failed them: a customer the \
            email reached and the SMS did not gets the SMS alone. It is a send like any other (on the shop's hour, \
            2 hours ahead, the coupon still eligible, cancellable, one send of the group at a time).

            Examples:
              coupond retry 42 --at "2026-12-02 10:00"
              coupond retry 42 --at "2026-12-02 10:00" --channels sms --reasons retries_exhausted,delivery_unconfirmed
            """
    )

    static let reasons = [
        "no_email_address", "invalid_email_address", "no_mobile_number", "invalid_mobile_number", "no_consent",
        "gateway_refused",
        "retries_exhausted", "delivery_unconfirmed", "message_too_long", "budget_exhausted", "system_error",
    ]

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The id of the send whose failed customers to retry.") var sendID: Int64

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
            "Channels to retry, comma-separated (default: every channel that failed someone).",
            valueName: "channels"
        )
    )
    var channels: String?

    @Option(
        help: ArgumentHelp(
            "Failure reasons to retry, comma-separated (default: all), such as retries_exhausted.",
            valueName: "reasons"
        )
    )
    var reasons: String?

    @Flag(help: "Print the new send as JSON.") var json = false

    static func list(_ text: String?) -> [String]? {
        text.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } }
    }

    func validate() throws {
        if let channels = Self.list(channels) {
            guard !channels.isEmpty, channels.allSatisfy({ $0 == "email" || $0 == "sms" }) else {
                throw ValidationError("--channels must be email, sms or email,sms (got \"\(self.channels ?? "")\")")
            }
        }
        if let reasons = Self.list(reasons) {
            let unknown = reasons.filter { !Self.reasons.contains($0) }
            guard !reasons.isEmpty, unknown.isEmpty else {
                throw ValidationError(
                    "--reasons: \(unknown.joined(separator: ", ")) is not a failure reason; use "
                        + Self.reasons.joined(separator: ", ")
                )
            }
        }
        guard ScheduleTimeParser.parse(at) != nil else {
            throw ValidationError(
                "--at must be \"YYYY-MM-DD HH:MM\" (shop time) or ISO 8601 with Z or an offset (got \"\(at)\")"
            )
        }
    }

    func run() throws {
        try reportingFailures {
            guard let time = ScheduleTimeParser.parse(at) else { return }
            let configuration = try global.loadConfiguration()
            let connection = try global.connect(configuration)
            defer { connection.close() }
            let send = try SendStore(connection: connection).retry(
                sendID: sendID,
                time: time,
                channels: Self.list(channels),
                reasons: Self.list(reasons)
            )
            print(json ? OutputFormat.json(send) : OutputFormat.details(send))
        }
    }
}

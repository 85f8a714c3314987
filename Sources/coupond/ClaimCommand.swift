import ArgumentParser
import CoupondDaemon
import Postgres
import Storage

struct ClaimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "claim",
        abstract: "Claims a coupon with a claim token for a logged-in customer (what the store calls).",
        discussion: """
            Runs coupond.claim_coupon(token, customer_id): succeeds once per customer, only for the customer the \
            link was issued to, only while the coupon is valid and under its receive limit. Refusals exit with 65 \
            and name the rule.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The claim token from the link (coupon_claim_token).") var token: String

    @Option(help: "The logged-in customer's id.") var customer: Int64

    func run() throws {
        try reportingFailures {
            let connection = try global.connect(try global.loadConfiguration())
            defer { connection.close() }
            do {
                let row = try connection.queryRow(
                    "SELECT coupon_id, send_id, claimed_at FROM coupond.claim_coupon(\(token), \(customer))"
                )
                print("claimed coupon \(row?["coupon_id"] ?? "?") (send \(row?["send_id"] ?? "?"))")
            } catch let error as PostgresError {
                throw SendRefusal(error) ?? error
            }
        }
    }
}

import ArgumentParser
import CoupondDaemon

@main
struct Coupond: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coupond",
        abstract: "Sends coupons to customer groups at the hour a merchant scheduled.",
        discussion: """
            Sends live in the PostgreSQL table coupond.sends; the database enforces every scheduling rule, and these \
            commands show its answer. The database is found through --database-url, the configuration file, \
            DATABASE_URL, or the PG* variables (as psql does), in that order.

            Exit codes: 0 success, 64 bad command-line input, 65 refused by a rule, 66 no such send or record, \
            69 database unavailable, 70 internal error, 75 temporary failure, 78 bad configuration.
            """,
        version: "0.1.0",
        subcommands: [
            RunCommand.self,
            MigrateCommand.self,
            ScheduleCommand.self,
            CancelCommand.self,
            RetryCommand.self,
            StatusCommand.self,
            PreviewCommand.self,
            ReportCommand.self,
            ClaimCommand.self,
        ]
    )
}

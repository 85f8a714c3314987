import ArgumentParser
import CoupondDaemon
import Postgres
import Storage

struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancels a send that has not started, until 2 hours before its time.",
        discussion: "Refusals (no such send, already started, too late) exit with code 65 and name the rule."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The send's id.") var sendID: Int64

    @Flag(help: "Print the cancelled send as JSON.") var json = false

    func run() throws {
        try reportingFailures {
            let connection = try global.connect(try global.loadConfiguration())
            defer { connection.close() }
            let send = try SendStore(connection: connection).cancel(sendID: sendID)
            print(json ? OutputFormat.json(send) : OutputFormat.details(send))
        }
    }
}

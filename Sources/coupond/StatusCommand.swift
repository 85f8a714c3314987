import ArgumentParser
import CoupondDaemon
import Foundation
import Postgres
import Storage

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Shows one send, or a group's activity list.",
        discussion: """
            coupond status 42          one send: status, progress, counts, reason, times
            coupond status --group 7   every send to group 7, latest first
            coupond status 42 --watch  the send live until it ends: progress bar, per-channel counts, messages \
            per second, ETA and gateway state, redrawn in place on a terminal (one line per refresh otherwise)
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The send's id.") var sendID: Int64?

    @Option(help: "List the activity of this customer group instead.") var group: Int64?

    @Flag(help: "Print JSON instead of a table.") var json = false

    @Flag(help: "Follow the send live until it ends.") var watch = false

    @Option(help: ArgumentHelp("Seconds between refreshes with --watch.", valueName: "seconds"))
    var interval: Double = 1

    func validate() throws {
        guard (sendID == nil) != (group == nil) else {
            throw ValidationError("give either a send id or --group, not both and not neither")
        }
        if watch {
            guard sendID != nil, !json else { throw ValidationError("--watch follows one send, without --json") }
            guard interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1 seconds") }
        }
    }

    func run() throws {
        try reportingFailures {
            let connection = try global.connect(try global.loadConfiguration())
            defer { connection.close() }
            let store = SendStore(connection: connection)
            if watch, let sendID {
                try SendWatch(connection: connection, sendID: sendID, interval: interval, terminal: isatty(1) == 1)
                    .run()
                return
            }
            if let sendID {
                guard let send = try store.send(id: sendID) else {
                    throw CommandFailure(.notFound, "send \(sendID) does not exist")
                }
                print(json ? OutputFormat.json(send) : OutputFormat.details(send))
            } else if let group {
                let sends = try store.activity(groupID: group)
                print(json ? OutputFormat.json(sends) : OutputFormat.table(sends))
            }
            // While a gateway is down, sends wait for it: say so, or a send that does not move looks stuck.
            if !json {
                for health in try GatewayHealthStore(connection: connection).unavailable() {
                    print(OutputFormat.unavailable(health))
                }
            }
        }
    }
}

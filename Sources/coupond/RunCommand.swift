import ArgumentParser
import CoupondDaemon
import Curl
import Delivery
import Dispatch
import Engine
import Foundation
import HTTPEndpoints
import Logging
import Messages
import Metrics
import Postgres
import Prometheus
import Signing
import Storage
import Systemd

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs the daemon: sends every send at its hour, until SIGTERM or SIGINT.",
        discussion: """
            Wakes on NOTIFY coupond_sends and on a poll, claims due sends under a lease (so any number of instances \
            can share one database), delivers through the configured gateways, records every outcome and notifies \
            the merchant. Under systemd (Type=notify) it reports READY, STATUS and the watchdog, and logs to the \
            journal with send.id, group.id and shop.id as fields.

            Exit codes: 0 after a clean stop, 75 when the database stays unreachable at start, 78 for bad \
            configuration or a database schema at another version.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        help: ArgumentHelp("Least severe level logged: trace, debug, info, notice, warning, error.", valueName: "level")
    )
    var logLevel: String = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() throws {
        let logger = Daemon.bootstrapProcess(logLevel: Logger.Level(rawValue: logLevel) ?? .info)
        try reportingFailures {
            let configuration = try global.loadConfiguration()
            let daemon = try Daemon(configuration: configuration, databaseURL: global.databaseURL, logger: logger)
            do {
                try daemon.run(notifier: SystemdNotifier())
            } catch let error as DatabaseUnavailable {
                throw CommandFailure(.temporary, error.description)
            }
        }
    }
}

import ArgumentParser
import Dispatch
import Foundation
import GatewaySimulator

/// The gateway simulator's own executable: a test tool, kept out of the production daemon's binary.
@main
struct GatewaySimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coupond-gateway-sim",
        abstract:
            "Runs the gateway simulator: the email and SMS APIs Coupond speaks, on loopback, with fault injection.",
        discussion: """
            Routes: POST /webhook/email, POST /webhook/sms, POST /v3/mail/send (SendGrid), \
            POST /2010-04-01/Accounts/{sid}/Messages.json (Twilio); GET /stats, GET /messages, POST /reset, \
            GET|PUT /faults. Prints "listening on http://HOST:PORT" when ready.
            """
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port; 0 picks a free one.") var port: UInt16 = 0
    @Option(help: ArgumentHelp("Fault plan as JSON, for example '{\"error_rate\":0.1}'.", valueName: "json"))
    var faults: String?

    func run() throws {
        var plan = FaultPlan()
        if let faults {
            do {
                plan = try JSONDecoder().decode(FaultPlan.self, from: Data(faults.utf8))
            } catch {
                throw ValidationError("--faults is not a valid fault plan: \(error)")
            }
        }
        let simulator = try GatewaySimulator(host: host, port: Int(port), faults: plan)
        FileHandle.standardOutput.write(Data("listening on http://\(host):\(simulator.port)\n".utf8))
        let stop = DispatchSemaphore(value: 0)
        let signals = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }
        stop.wait()
        simulator.stop()
    }
}

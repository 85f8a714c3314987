import Foundation
import Postgres
import TestSupport
import Testing

/// `coupond status SEND --watch` while `coupond run` delivers the send.
@Suite(.serialized) struct StatusWatchTests {
    /// A send to `customers` on both channels through slow webhooks, due now, with a daemon working on it.
    static func sendGoingOut(_ h: EngineHarness, customers: Int) throws -> (Int64, ChildProcess) {
        let send = try CrashSafetyTests.scheduleLargeSend(h, customers: customers)
        let daemon = try h.startDaemon(
            config: try h.configuration(emailProvider: "webhook", smsProvider: "webhook", batchSize: 50)
        )
        try h.arrive()
        #expect(try eventually(timeout: 30) { try h.send(send)["status"] == "sending" })
        return (send, daemon)
    }

    @Test func withoutATerminalEachRefreshIsOneLineUntilTheSendEnds() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5}"#) { h in
            let (send, daemon) = try Self.sendGoingOut(h, customers: 1000)
            defer { _ = daemon.terminate() }
            let result = try runProduct(
                "coupond",
                ["status", "\(send)", "--watch", "--interval", "0.2"],
                environment: h.db.environment.mapValues { $0 }.merging(["DATABASE_URL": nil]) { $1 }
            )
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n")
            #expect(lines.count >= 2, "\(result.stdout)")
            #expect(lines.first?.contains(": Sending | [") == true, "\(lines.first ?? "")")
            let last = try #require(lines.last)
            #expect(last.contains(": Done | [##############################] 100.0%"), "\(last)")
            #expect(last.contains("email sent 1000, failed 0, to go 0"), "\(last)")
            #expect(last.contains("sms   sent 1000, failed 0, to go 0"), "\(last)")
            #expect(!result.stdout.contains("\u{1B}["), "escape sequences outside a terminal")
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux")))
    func onATerminalTheViewIsRedrawnInPlace() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5}"#) { h in
            let (send, daemon) = try Self.sendGoingOut(h, customers: 1500)
            defer { _ = daemon.terminate() }
            let session = "coupond-watch-\(UUID().uuidString.prefix(8))"
            let environment = h.db.environment.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let command =
                "env -u DATABASE_URL \(environment) \(builtProduct("coupond").path) status \(send) --watch "
                + "--interval 0.2; sleep 60"
            /// Runs tmux; only `capture` reads its output. The call that starts the tmux server is not waited for:
            /// the server it leaves behind keeps what Foundation's Process watches open, and the wait would last as
            /// long as the server.
            func tmux(_ arguments: [String], capture: Bool = false, wait: Bool = true) throws -> String {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/tmux")
                process.arguments = arguments
                process.standardInput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                let output = Pipe()
                process.standardOutput = capture ? output : FileHandle.nullDevice
                try process.run()
                let data = capture ? output.fileHandleForReading.readDataToEndOfFile() : Data()
                if wait { process.waitUntilExit() }
                return String(decoding: data, as: UTF8.self)
            }
            _ = try tmux(["new-session", "-d", "-s", session, "-x", "160", "-y", "30", command], wait: false)
            defer { _ = try? tmux(["kill-session", "-t", session], wait: false) }
            var sawProgress = false
            let ended = try eventually(timeout: 60) {
                let screen = try tmux(["capture-pane", "-p", "-t", session], capture: true)
                if screen.contains(": Sending") && screen.contains("msg/s") { sawProgress = true }
                return screen.contains(": Done")
            }
            #expect(ended)
            #expect(sawProgress, "the live view never showed the send in progress")
            let screen = try tmux(["capture-pane", "-p", "-t", session], capture: true)
            // Redrawn in place: one view on the screen, not one per refresh.
            #expect(screen.components(separatedBy: "Send \(send) to").count == 2, "\(screen)")
            #expect(screen.contains("[##############################] 100.0%"), "\(screen)")
            #expect(screen.contains("gateways  up"), "\(screen)")
        }
    }
}

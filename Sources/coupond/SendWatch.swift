import Engine
import Foundation
import Postgres
import Storage

/// `coupond status SEND --watch`: the send live, until it ends. On a terminal the view is redrawn in place; otherwise
/// each refresh is one plain line, for logs and pipes.
struct SendWatch {
    let connection: PostgresConnection
    let sendID: Int64
    let interval: Double
    let terminal: Bool

    /// What the view shows at one refresh.
    struct Frame {
        var send: SendSummary
        var email: ChannelProgress?
        var sms: ChannelProgress?
        var unavailable: [GatewayHealth]
        var messagesPerSecond: Double?
        var secondsLeft: Double?
    }

    func run() throws {
        let store = SendStore(connection: connection)
        var first: (at: Date, messages: Int, customers: Int)?
        var drawn = 0
        while true {
            guard let send = try store.send(id: sendID) else {
                throw CommandFailure(.notFound, "send \(sendID) does not exist")
            }
            let channels = try ChannelProgress.load(sendID: sendID, on: connection)
            var frame = Frame(
                send: send,
                email: channels.email,
                sms: channels.sms,
                unavailable: try GatewayHealthStore(connection: connection).unavailable()
            )
            // Rates since the watch began seeing the send go out.
            let now = Date()
            let messages = (channels.email?.final ?? 0) + (channels.sms?.final ?? 0)
            let customers = send.sentCount + send.failedCount
            if send.status == .sending, first == nil { first = (now, messages, customers) }
            if let first, now.timeIntervalSince(first.at) > 0.5 {
                let seconds = now.timeIntervalSince(first.at)
                frame.messagesPerSecond = Double(messages - first.messages) / seconds
                let customersPerSecond = Double(customers - first.customers) / seconds
                if customersPerSecond > 0 {
                    frame.secondsLeft = Double(max(0, (send.recipientCount ?? 0) - customers)) / customersPerSecond
                }
            }
            let lines = Self.lines(frame)
            if terminal {
                // Back to the top of the last frame, then each line cleared and written again.
                if drawn > 0 { print("\u{1B}[\(drawn)F", terminator: "") }
                for line in lines { print("\u{1B}[2K" + line) }
                drawn = lines.count
            } else {
                print(lines.joined(separator: " | "))
            }
            fflush(nil)
            if send.status != .notStarted && send.status != .sending { return }
            Thread.sleep(forTimeInterval: interval)
        }
    }

    /// The view of one frame, one string per line.
    static func lines(_ frame: Frame) -> [String] {
        let send = frame.send
        var lines = ["Send \(send.sendID) to \(send.groupName ?? "group \(send.groupID)"): \(send.statusLabel)"]
        let total = send.recipientCount ?? 0
        let final = send.sentCount + send.failedCount
        let fraction = total > 0 ? min(1, Double(final) / Double(total)) : (send.status == .done ? 1 : 0)
        let width = 30
        let filled = Int((fraction * Double(width)).rounded(.down))
        lines.append(
            "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
                + String(format: "%5.1f%%", fraction * 100)
                + "  \(final)/\(total) customers final: \(send.sentCount) sent, \(send.failedCount) failed"
        )
        for (name, progress) in [("email", frame.email), ("sms", frame.sms)] {
            guard let progress else { continue }
            lines.append(
                "\(name.padding(toLength: 6, withPad: " ", startingAt: 0))sent \(progress.sent), "
                    + "failed \(progress.failed), to go \(progress.open)"
            )
        }
        let rate = frame.messagesPerSecond.map { "\(Int($0.rounded())) msg/s" } ?? "- msg/s"
        let eta = frame.secondsLeft.map { "ETA \(RemainingTime.text($0))" } ?? "ETA -"
        lines.append("rate  \(rate), \(eta)")
        if frame.unavailable.isEmpty {
            lines.append("gateways  up")
        } else {
            for health in frame.unavailable { lines.append(OutputFormat.unavailable(health)) }
        }
        return lines
    }
}

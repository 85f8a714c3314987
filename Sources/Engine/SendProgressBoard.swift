import Foundation
import Synchronization

/// Live progress of the sends this instance is delivering, for systemd's `STATUS=` line.
///
/// Workers report after every recorded batch, so the line moves while a send runs rather than when it ends.
final class SendProgressBoard: Sendable {
    /// One send's progress as its worker last reported it.
    struct Entry: Equatable {
        var total: Int
        var sent: Int
        var failed: Int
        /// Messages (one per customer and channel) recorded by this instance since it took the send.
        var messages: Int
        var since: Date
        /// Customers already final when this worker took the send, so that the rate counts only its own.
        var finalAtBegin: Int

        /// Customers made final per second by this worker, 0 before the first.
        func customersPerSecond(now: Date) -> Double {
            let seconds = now.timeIntervalSince(since)
            return seconds > 0 ? Double(sent + failed - finalAtBegin) / seconds : 0
        }

        /// Seconds until every customer is final at the current rate, `nil` before there is a rate.
        func secondsLeft(now: Date) -> Double? {
            let rate = customersPerSecond(now: now)
            guard rate > 0 else { return nil }
            return Double(max(0, total - sent - failed)) / rate
        }
    }

    private let entries = Mutex<[Int64: Entry]>([:])
    private let messagesSinceStart = Atomic<Int>(0)

    /// Starts showing a send, with the counts it already had when this worker took it.
    func begin(sendID: Int64, total: Int, sent: Int, failed: Int, now: Date = Date()) {
        entries.withLock {
            $0[sendID] = Entry(
                total: total,
                sent: sent,
                failed: failed,
                messages: 0,
                since: now,
                finalAtBegin: sent + failed
            )
        }
    }

    /// Adds a recorded batch: customers now final, and the messages whose outcome was written.
    func add(sendID: Int64, sent: Int, failed: Int, messages: Int) {
        messagesSinceStart.add(messages, ordering: .relaxed)
        entries.withLock { entries in
            entries[sendID]?.sent += sent
            entries[sendID]?.failed += failed
            entries[sendID]?.messages += messages
        }
    }

    /// Stops showing a send (done, handed back or abandoned).
    func end(sendID: Int64) {
        _ = entries.withLock { $0.removeValue(forKey: sendID) }
    }

    /// One readable line, for example `sending send 42: 1500/5000 sent, 12 failed, 830 msg/s, ETA 4m13s; 1512
    /// messages recorded since start`.
    func statusLine(now: Date = Date()) -> String {
        let snapshot = entries.withLock { $0 }
        let recorded = messagesSinceStart.load(ordering: .relaxed)
        guard !snapshot.isEmpty else { return "idle; \(recorded) messages recorded since start" }
        let sends = snapshot.sorted { $0.key < $1.key }.map { sendID, entry in
            let seconds = now.timeIntervalSince(entry.since)
            let rate = seconds > 0 ? Int((Double(entry.messages) / seconds).rounded()) : 0
            let eta = entry.secondsLeft(now: now).map(RemainingTime.text) ?? "unknown"
            return
                "send \(sendID): \(entry.sent)/\(entry.total) sent, \(entry.failed) failed, \(rate) msg/s, ETA \(eta)"
        }
        return "sending " + sends.joined(separator: ", ") + "; \(recorded) messages recorded since start"
    }
}

/// A time left as people read it: `45s`, `4m13s` or `2h05m`.
public enum RemainingTime {
    public static func text(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m" + String(format: "%02ds", whole % 60) }
        return "\(whole / 3600)h" + String(format: "%02dm", whole % 3600 / 60)
    }
}

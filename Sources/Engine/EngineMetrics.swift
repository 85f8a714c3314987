import Metrics
import Storage

/// The engine's counters (swift-metrics): messages recorded by channel and outcome, and customers finished, which
/// `rate()` turns into messages and recipients per second. Handles are made once, on first use, after `coupond run`
/// has bootstrapped its backend.
enum EngineMetrics {
    private static let outcomes = ["sent", "failed", "unknown"]
    private static let messages: [String: Counter] = Dictionary(
        uniqueKeysWithValues: ["email", "sms"].flatMap { channel in
            outcomes.map { outcome in
                (
                    "\(channel)/\(outcome)",
                    Counter(label: "coupond_messages_total", dimensions: [("channel", channel), ("outcome", outcome)])
                )
            }
        }
    )
    private static let recipientsSent = Counter(label: "coupond_recipients_total", dimensions: [("outcome", "sent")])
    private static let recipientsFailed = Counter(
        label: "coupond_recipients_total",
        dimensions: [("outcome", "failed")]
    )

    /// Counts a recorded batch: each channel's final or unknown outcome, and the customers now final.
    static func recorded(_ outcomes: [RecipientOutcome], sent: Int, failed: Int) {
        var counts: [String: Int] = [:]
        for outcome in outcomes {
            if let status = outcome.emailStatus, status != .pending {
                counts["email/\(status.rawValue)", default: 0] += 1
            }
            if let status = outcome.smsStatus, status != .pending { counts["sms/\(status.rawValue)", default: 0] += 1 }
        }
        for (key, count) in counts { messages[key]?.increment(by: count) }
        if sent > 0 { recipientsSent.increment(by: sent) }
        if failed > 0 { recipientsFailed.increment(by: failed) }
    }
}

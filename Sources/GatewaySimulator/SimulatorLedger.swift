public import Foundation
import Synchronization

/// One message the simulator accepted.
public struct AcceptedMessage: Sendable, Codable, Equatable {
    public var id: String
    /// `email` or `sms`.
    public var channel: String
    /// The API it came through: `webhook`, `sendgrid` or `twilio`.
    public var api: String
    public var to: String
    public var idempotencyKey: String
    /// The subject of an email.
    public var subject: String?
    /// The SMS text, or the email's text part.
    public var text: String
    /// The email's HTML part.
    public var html: String? = nil
    /// The email's own headers (`List-Unsubscribe`, `List-Unsubscribe-Post`), as the request gave them.
    public var headers: [String: String]? = nil
    /// Times the same idempotency key came again after it was accepted.
    public var repeats: Int
    /// When it was accepted.
    public var acceptedAt = Date()

    enum CodingKeys: String, CodingKey {
        case id, channel, api, to, subject, text, html, headers, repeats
        case idempotencyKey = "idempotency_key", acceptedAt = "accepted_at"
    }
}

/// Counts a simulator keeps, for tests and the demo.
public struct SimulatorStats: Sendable, Codable, Equatable {
    /// Distinct messages accepted (one per idempotency key).
    public var accepted = 0
    /// Requests that repeated an accepted idempotency key (answered as the first one, not delivered again).
    public var duplicates = 0
    /// With ``FaultPlan/nonIdempotent``: requests that repeated a delivered key and were delivered again, as SendGrid
    /// and Twilio would. Each is a message a customer got twice.
    public var redelivered = 0
    /// Requests whose message was delivered and whose answer was then lost (``FaultPlan/lostAnswerRate``).
    public var lostAnswers = 0
    /// Reads of the Twilio-style message list.
    public var listings = 0
    /// Requests whose message was delivered and answered with an unreadable body (``FaultPlan/malformedRate``).
    public var malformedAnswers = 0
    /// Recipients that received more than one distinct message on one channel.
    public var recipientsWithSeveralMessages = 0
    public var refused = 0
    public var injectedErrors = 0
    public var injectedRateLimits = 0
    public var injectedDelays = 0
    public var injectedDrops = 0
    public var requests = 0

    enum CodingKeys: String, CodingKey {
        case accepted, duplicates, refused, requests
        case recipientsWithSeveralMessages = "recipients_with_several_messages"
        case injectedErrors = "injected_errors", injectedRateLimits = "injected_rate_limits"
        case injectedDelays = "injected_delays", injectedDrops = "injected_drops"
        case redelivered, lostAnswers = "lost_answers", listings, malformedAnswers = "malformed_answers"
    }
}

/// What the simulator has seen, safe to use from every connection's task.
final class SimulatorLedger: Sendable {
    private struct State {
        var plan = FaultPlan()
        var stats = SimulatorStats()
        var messages: [AcceptedMessage] = []
        var indexByKey: [String: Int] = [:]
        var attemptsByKey: [String: Int] = [:]
        var messagesPerRecipient: [String: Int] = [:]
        /// Indexes into `messages` per channel and recipient, for the Twilio-style list.
        var indexesByRecipient: [String: [Int]] = [:]
    }

    private let state = Mutex(State())
    private let messageCounter = Atomic<Int>(0)
    /// Differs between simulator runs, so that ids do not repeat across them.
    private let idPrefix = String(UInt32.random(in: 0x1000_0000...UInt32.max), radix: 16)

    /// A new message id: `prefix`, this run's tag and a counter (a UUID per message cost a `getrandom` call).
    func nextMessageID(prefix: String) -> String {
        let number = messageCounter.add(1, ordering: .relaxed).newValue
        return prefix + idPrefix + String(number, radix: 16)
    }

    var plan: FaultPlan {
        get { state.withLock { $0.plan } }
        set { state.withLock { $0.plan = newValue } }
    }

    var stats: SimulatorStats { state.withLock { $0.stats } }

    func messages(limit: Int?) -> [AcceptedMessage] {
        state.withLock { state in limit.map { Array(state.messages.prefix($0)) } ?? state.messages }
    }

    func reset() {
        state.withLock { $0 = State(plan: $0.plan) }
    }

    func count(_ update: (inout SimulatorStats) -> Void) {
        state.withLock { update(&$0.stats) }
    }

    /// Counts an attempt of a key and returns how many there have been, this one included.
    func attempt(key: String) -> Int {
        state.withLock { state in
            state.stats.requests += 1
            state.attemptsByKey[key, default: 0] += 1
            return state.attemptsByKey[key]!
        }
    }

    /// Records a message unless its key was accepted before (and the plan honours keys); returns the id to answer
    /// with.
    func accept(_ message: AcceptedMessage) -> String {
        state.withLock { state in
            if let index = state.indexByKey[message.idempotencyKey] {
                state.messages[index].repeats += 1
                guard state.plan.nonIdempotent else {
                    state.stats.duplicates += 1
                    return state.messages[index].id
                }
                state.stats.redelivered += 1
            } else {
                state.indexByKey[message.idempotencyKey] = state.messages.count
                state.stats.accepted += 1
            }
            let recipient = message.channel + ":" + message.to
            state.indexesByRecipient[recipient, default: []].append(state.messages.count)
            state.messages.append(message)
            state.messagesPerRecipient[recipient, default: 0] += 1
            if state.messagesPerRecipient[recipient] == 2 { state.stats.recipientsWithSeveralMessages += 1 }
            return message.id
        }
    }
}

extension SimulatorLedger {
    /// The messages delivered to `to` on `channel`, newest first, as Twilio lists them.
    func messages(channel: String, to: String) -> [AcceptedMessage] {
        state.withLock { state in
            state.stats.listings += 1
            return (state.indexesByRecipient[channel + ":" + to] ?? []).reversed().map { state.messages[$0] }
        }
    }
}

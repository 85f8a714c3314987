public import Foundation

/// When to try a message again: exponential backoff with full jitter, capped, for as long as a time budget allows.
///
/// A gateway outage of minutes must not fail customers for good, so the limit is time, not a handful of quick
/// attempts. Answers that only ask to slow down (429, or any answer with `Retry-After`) wait as told and do not count
/// as failed attempts.
public struct RetryPolicy: Sendable {
    /// Failed attempts in all, the first included, when a cap is wanted on top of the budget; `nil` for none.
    public var maxAttempts: Int?
    /// How long after its first attempt a message may still be tried, in seconds.
    public var budget: TimeInterval
    /// The first backoff ceiling, in seconds.
    public var initialBackoff: TimeInterval
    /// The largest backoff ceiling, in seconds.
    public var maxBackoff: TimeInterval
    /// The longest `Retry-After` honoured; a longer one is shortened to this.
    public var maxRetryAfter: TimeInterval

    public init(
        maxAttempts: Int? = nil,
        budget: TimeInterval = 15 * 60,
        initialBackoff: TimeInterval = 0.2,
        maxBackoff: TimeInterval = 10,
        maxRetryAfter: TimeInterval = 60
    ) {
        self.maxAttempts = maxAttempts.map { max(1, $0) }
        self.budget = max(0, budget)
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxRetryAfter = maxRetryAfter
    }

    /// The delay before attempt `attempt + 1`, given that attempt `attempt` (1-based) failed.
    ///
    /// - Parameter retryAfter: the gateway's `Retry-After`, which wins over the computed backoff.
    public func delay(afterAttempt attempt: Int, retryAfter: TimeInterval?) -> TimeInterval {
        if let retryAfter { return min(retryAfter, maxRetryAfter) }
        let ceiling = min(maxBackoff, initialBackoff * pow(2, Double(attempt - 1)))
        // Full jitter spreads the retries of many messages that failed together.
        return Double.random(in: 0...ceiling)
    }

    /// Whether a message may be tried again after `delay` seconds, `elapsed` seconds after its first attempt, with
    /// `failures` attempts counted against the cap so far.
    public func allowsRetry(failures: Int, elapsed: TimeInterval, delay: TimeInterval) -> Bool {
        if let maxAttempts, failures >= maxAttempts { return false }
        return elapsed + delay <= budget
    }
}

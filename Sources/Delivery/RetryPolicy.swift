public import Foundation

/// When to try a message again: exponential backoff with full jitter, capped, for a bounded number of attempts.
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included.
    public var maxAttempts: Int
    /// The first backoff ceiling, in seconds.
    public var initialBackoff: TimeInterval
    /// The largest backoff ceiling, in seconds.
    public var maxBackoff: TimeInterval
    /// The longest `Retry-After` honoured; a longer one is shortened to this.
    public var maxRetryAfter: TimeInterval

    public init(
        maxAttempts: Int = 5,
        initialBackoff: TimeInterval = 0.2,
        maxBackoff: TimeInterval = 10,
        maxRetryAfter: TimeInterval = 60
    ) {
        self.maxAttempts = max(1, maxAttempts)
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
}

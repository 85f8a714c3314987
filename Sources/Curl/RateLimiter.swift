import Synchronization

/// Decides when a waiting request may start: a rate limit, or a circuit breaker that holds requests while their
/// gateway is down.
public protocol RequestGate: Sendable {
    /// Lets one request start now (`nil`), or says when to ask again.
    func admit(now: ContinuousClock.Instant) -> ContinuousClock.Instant?
}

/// A token bucket: at most `ratePerSecond` acquisitions per second on average, with bursts up to `burst`.
public final class RateLimiter: RequestGate {
    private struct State {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    public let ratePerSecond: Double
    public let burst: Double
    private let state: Mutex<State>

    public init(ratePerSecond: Double, burst: Double? = nil) {
        precondition(ratePerSecond > 0, "rate must be positive")
        self.ratePerSecond = ratePerSecond
        self.burst = max(1, burst ?? ratePerSecond / 10)
        state = Mutex(State(tokens: self.burst, updated: .now))
    }

    /// Takes a token if one is available.
    ///
    /// - Returns: `nil` when a token was taken, otherwise the instant when one will be.
    public func acquire(now: ContinuousClock.Instant = .now) -> ContinuousClock.Instant? {
        state.withLock { state in
            let elapsed = now - state.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            state.tokens = min(burst, state.tokens + max(0, seconds) * ratePerSecond)
            state.updated = now
            if state.tokens >= 1 {
                state.tokens -= 1
                return nil
            }
            let wait = (1 - state.tokens) / ratePerSecond
            return now.advanced(by: .microseconds(Int64(wait * 1_000_000) + 1))
        }
    }

    public func admit(now: ContinuousClock.Instant) -> ContinuousClock.Instant? { acquire(now: now) }
}

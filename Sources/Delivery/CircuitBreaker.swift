public import Curl
public import Foundation
import Synchronization

/// Holds a gateway's requests while it is down, instead of letting each message burn its attempts against it.
///
/// After `threshold` consecutive failures (no connection, a timeout, a 5xx), the breaker opens: requests wait in the
/// driver (it is their ``RequestGate``) and one probe goes out after a pause that doubles up to `maxProbeInterval`.
/// The first answer that shows the gateway up (any status but 5xx and 408) closes it, and the waiting requests go.
/// A message held past its retry budget fails then, without another request.
public final class CircuitBreaker: RequestGate {
    /// What the breaker says of its gateway, for the log, `coupond status` and tests.
    public struct Snapshot: Sendable, Equatable {
        /// `nil` while the gateway is available.
        public var unavailableSince: Date?
        /// The last failure seen, without URLs or credentials.
        public var lastError: String?
        public var isOpen: Bool { unavailableSince != nil }
    }

    private struct State {
        var consecutiveFailures = 0
        var openedAt: ContinuousClock.Instant?
        var snapshot = Snapshot()
        var nextProbe: ContinuousClock.Instant = .now
        var probeOut = false
        var probeInterval: Duration
    }

    public let threshold: Int
    private let firstProbeInterval: Duration
    private let maxProbeInterval: Duration
    private let state: Mutex<State>
    private let onChange: @Sendable (Snapshot) -> Void

    /// - Parameter onChange: called (outside the lock) when the breaker opens or closes.
    public init(
        threshold: Int = 10,
        firstProbeInterval: Duration = .seconds(2),
        maxProbeInterval: Duration = .seconds(30),
        onChange: @escaping @Sendable (Snapshot) -> Void = { _ in }
    ) {
        self.threshold = max(1, threshold)
        self.firstProbeInterval = firstProbeInterval
        self.maxProbeInterval = maxProbeInterval
        self.onChange = onChange
        state = Mutex(State(probeInterval: firstProbeInterval))
    }

    public var snapshot: Snapshot { state.withLock { $0.snapshot } }

    public func admit(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        state.withLock { state in
            guard state.openedAt != nil else { return nil }
            if !state.probeOut && now >= state.nextProbe {
                state.probeOut = true
                return nil
            }
            // With a probe out, look again soon: its answer may close the breaker (which also wakes the driver).
            return state.probeOut ? now + .seconds(1) : state.nextProbe
        }
    }

    /// Counts an answer that shows the gateway up: closes an open breaker.
    public func recordSuccess() {
        let closed = state.withLock { state -> Snapshot? in
            state.consecutiveFailures = 0
            guard state.openedAt != nil else { return nil }
            state.openedAt = nil
            state.probeOut = false
            state.probeInterval = firstProbeInterval
            state.snapshot = Snapshot()
            return state.snapshot
        }
        if let closed { onChange(closed) }
    }

    /// Counts a failure that says the gateway may be down: opens the breaker after `threshold` in a row, and puts
    /// the next probe further off when it was the probe that failed.
    public func recordFailure(_ detail: String) {
        let opened = state.withLock { state -> Snapshot? in
            state.consecutiveFailures += 1
            let now = ContinuousClock.now
            if state.openedAt != nil {
                state.snapshot.lastError = detail
                if state.probeOut {
                    state.probeOut = false
                    state.probeInterval = min(state.probeInterval * 2, maxProbeInterval)
                    state.nextProbe = now + state.probeInterval
                }
                return nil
            }
            guard state.consecutiveFailures >= threshold else { return nil }
            state.openedAt = now
            state.nextProbe = now + state.probeInterval
            state.snapshot = Snapshot(unavailableSince: Date(), lastError: detail)
            return state.snapshot
        }
        if let opened { onChange(opened) }
    }
}

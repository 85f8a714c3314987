internal import CCurl
import Synchronization

/// Cancels a group of requests at once: those waiting to start (a retry scheduled for later included) and those
/// running, whose transfers are removed from the multi handle.
///
/// A send worker that loses its lease hands its messages to whoever takes the send over; its own requests must stop
/// at once, or retries scheduled a minute ahead would still go out beside the new holder's.
///
/// It can also lapse: a worker that holds a lease says until when (``hold(until:)``), and a request that has not
/// started by then never starts. A worker frozen (SIGSTOP, a stuck machine) past its lease has been replaced by the
/// time it runs again; its queued requests and retries must not go out beside the new holder's, and the worker's
/// own thread may only notice after they would have.
public final class CurlCancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)
    /// Nanoseconds after ``reference`` after which nothing more starts; `Int64.max` while nothing lapses.
    private let lapsesAt = Atomic<Int64>(.max)
    private static let reference = ContinuousClock.now

    public init() {}

    /// Whether ``CurlMultiDriver/cancel(_:)`` was called with this token.
    public var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    func markCancelled() { cancelled.store(true, ordering: .releasing) }

    /// Lets requests start until `instant`, and none after it (until the next call moves it on).
    public func hold(until instant: ContinuousClock.Instant) {
        let elapsed = Self.reference.duration(to: instant).components
        let nanoseconds = elapsed.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        lapsesAt.store(
            nanoseconds.overflow ? .max : nanoseconds.partialValue &+ elapsed.attoseconds / 1_000_000_000,
            ordering: .releasing
        )
    }

    /// Whether requests may no longer start at `now`: cancelled, or past the instant given to ``hold(until:)``.
    public func hasLapsed(at now: ContinuousClock.Instant = .now) -> Bool {
        if isCancelled { return true }
        let limit = lapsesAt.load(ordering: .acquiring)
        guard limit != .max else { return false }
        return Self.reference.duration(to: now) > .nanoseconds(limit)
    }
}

extension CurlError {
    /// The request was cancelled through its ``CurlCancellation``.
    init(cancelled: Void, requestSent: Bool = false) {
        self.init(
            code: CURLE_ABORTED_BY_CALLBACK,
            detail: "request cancelled",
            operation: "cancel",
            requestSent: requestSent
        )
    }

    /// Whether the request was cancelled through its ``CurlCancellation`` rather than failing.
    public var isCancelled: Bool { operation == "cancel" }
}

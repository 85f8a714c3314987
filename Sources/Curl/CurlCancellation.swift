internal import CCurl
import Synchronization

/// Cancels a group of requests at once: those waiting to start (a retry scheduled for later included) and those
/// running, whose transfers are removed from the multi handle.
///
/// A send worker that loses its lease hands its messages to whoever takes the send over; its own requests must stop
/// at once, or retries scheduled a minute ahead would still go out beside the new holder's.
public final class CurlCancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)

    public init() {}

    /// Whether ``CurlMultiDriver/cancel(_:)`` was called with this token.
    public var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    func markCancelled() { cancelled.store(true, ordering: .releasing) }
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

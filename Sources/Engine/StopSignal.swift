import Dispatch
import Synchronization

/// A one-way flag that asks the engine to stop, and lets waiting threads wake up early.
public final class StopSignal: Sendable {
    private let requested = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)

    public init() {}

    public var isRequested: Bool { requested.load(ordering: .acquiring) }

    public func request() {
        if !requested.exchange(true, ordering: .acquiringAndReleasing) { wake.signal() }
    }

    /// Sleeps up to `seconds`, returning early (true) once a stop is requested.
    @discardableResult
    public func sleep(_ seconds: Double) -> Bool {
        if isRequested { return true }
        if wake.wait(timeout: .now() + seconds) == .success {
            wake.signal()  // keep the flag visible to other sleepers
            return true
        }
        return isRequested
    }
}

import Delivery
import Dispatch
import Synchronization

/// Gathers the outcomes of a batch from the driver thread and wakes the worker when the last one is in.
final class OutcomeCollector: Sendable {
    private struct State {
        var email: [DeliveryOutcome?]
        var sms: [DeliveryOutcome?]
        var outstanding = 0
        var sealed = false
    }

    private let state: Mutex<State>
    private let done = DispatchSemaphore(value: 0)

    init(count: Int) {
        state = Mutex(State(email: Array(repeating: nil, count: count), sms: Array(repeating: nil, count: count)))
    }

    func expect() { state.withLock { $0.outstanding += 1 } }

    func set(_ index: Int, email outcome: DeliveryOutcome) {
        finish { $0.email[index] = outcome }
    }

    func set(_ index: Int, sms outcome: DeliveryOutcome) {
        finish { $0.sms[index] = outcome }
    }

    /// No more messages will be expected; wakes the waiter at once when all are already in.
    func sealed() {
        let complete = state.withLock { state in
            state.sealed = true
            return state.outstanding == 0
        }
        if complete { done.signal() }
    }

    private func finish(_ update: (inout State) -> Void) {
        let complete = state.withLock { state in
            update(&state)
            state.outstanding -= 1
            return state.sealed && state.outstanding == 0
        }
        if complete { done.signal() }
    }

    /// Waits up to `seconds` for the last outcome; `true` when all are in. Returns at once, and again, once they
    /// are.
    func wait(seconds: Double) -> Bool {
        if isComplete { return true }
        guard done.wait(timeout: .now() + seconds) == .success else { return false }
        // Whoever waits next (the salvage after a lost connection) must not wait for a signal already taken.
        done.signal()
        return true
    }

    private var isComplete: Bool { state.withLock { $0.sealed && $0.outstanding == 0 } }

    func outcomes(_ index: Int) -> (email: DeliveryOutcome?, sms: DeliveryOutcome?) {
        state.withLock { ($0.email[index], $0.sms[index]) }
    }
}

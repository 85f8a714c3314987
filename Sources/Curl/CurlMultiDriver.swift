internal import CCurl
import Foundation
import Synchronization

/// Runs many HTTP requests at once on one thread with libcurl's multi interface.
///
/// Other threads ``submit(_:notBefore:limiter:completion:)`` requests; the driver thread starts them when their time
/// has come, the rate limiter allows and fewer than `maxInFlight` are running, reusing connections through the multi
/// handle's cache. Completions run on the driver thread and must be quick (hand work elsewhere).
///
/// ### Threading
/// One driver thread owns the `CURLM` handle and every easy handle; other threads only touch the submission queue
/// (a `Mutex`) and call `curl_multi_wakeup`, which libcurl allows from any thread.
///
/// ### Ownership
/// ``start()`` creates the thread; ``shutdown()`` fails what was not started, waits for the running transfers and
/// frees the handles. The multi handle is created in `init` and cleaned up by the driver thread as it exits.
///
/// Related libcurl documentation: https://curl.se/libcurl/c/libcurl-multi.html
public final class CurlMultiDriver: Sendable {
    /// A request waiting to start or running.
    final class Job: @unchecked Sendable {
        // Immutable after init, or touched only by the driver thread (transfer).
        let request: HTTPRequest
        let notBefore: ContinuousClock.Instant
        let limiter: RateLimiter?
        /// Asked before the limiter: a circuit breaker holding requests while their gateway is down.
        let gate: (any RequestGate)?
        /// A request its gate still holds at this instant completes with ``CurlError/isHeldPastDeadline``.
        let deadline: ContinuousClock.Instant?
        let cancellation: CurlCancellation?
        let completion: @Sendable (Result<HTTPResponse, CurlError>) -> Void
        var handle: CurlHandle?

        init(
            request: HTTPRequest,
            notBefore: ContinuousClock.Instant,
            limiter: RateLimiter?,
            gate: (any RequestGate)?,
            deadline: ContinuousClock.Instant?,
            cancellation: CurlCancellation?,
            completion: @escaping @Sendable (Result<HTTPResponse, CurlError>) -> Void
        ) {
            self.request = request
            self.notBefore = notBefore
            self.limiter = limiter
            self.gate = gate
            self.deadline = deadline
            self.cancellation = cancellation
            self.completion = completion
        }
    }

    private struct Shared {
        var incoming: [Job] = []
        /// A ``cancel(_:)`` came since the loop last looked for cancelled jobs.
        var cancelling = false
        var stopping = false
        var started = false
        var stopped = false
    }

    /// The multi handle, as an integer so that the class stays `Sendable`; only the driver thread uses it after
    /// `init`, except for `curl_multi_wakeup`.
    private let multiAddress: UInt
    private let maxInFlight: Int
    private let shared = Mutex(Shared())
    private let stats = Mutex(Statistics())
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - maxInFlight: most transfers running at once (across all gateways).
    ///   - maxConnectionsPerHost: libcurl `CURLMOPT_MAX_HOST_CONNECTIONS`.
    public init(maxInFlight: Int = 64, maxConnectionsPerHost: Int = 64) {
        guard let multi = curl_multi_init() else { preconditionFailure("curl_multi_init failed: out of memory") }
        _ = ccurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxConnectionsPerHost)
        _ = ccurl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(maxInFlight, maxConnectionsPerHost))
        multiAddress = UInt(bitPattern: multi)
        self.maxInFlight = maxInFlight
    }

    private var multi: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: multiAddress)! }

    /// Starts the driver thread.
    public func start() {
        let alreadyStarted = shared.withLock { state in
            defer { state.started = true }
            return state.started
        }
        precondition(!alreadyStarted, "CurlMultiDriver.start() called twice")
        let thread = Thread { [self] in
            runLoop()
            finished.signal()
        }
        thread.name = "curl-driver"
        thread.start()
    }

    /// Queues a request.
    ///
    /// - Parameters:
    ///   - notBefore: the request does not start before this instant (retry backoff, `Retry-After`).
    ///   - limiter: a rate limit the request counts against.
    ///   - gate: asked before the limiter whether the request may start (a circuit breaker).
    ///   - deadline: when the gate still holds the request at this instant, it completes with an error whose
    ///     ``CurlError/isHeldPastDeadline`` is true instead of waiting on.
    ///   - cancellation: cancels the request with others when passed to ``cancel(_:)``.
    ///   - completion: called once on the driver thread with the response or the transfer error.
    public func submit(
        _ request: HTTPRequest,
        notBefore: ContinuousClock.Instant = .now,
        limiter: RateLimiter? = nil,
        gate: (any RequestGate)? = nil,
        deadline: ContinuousClock.Instant? = nil,
        cancellation: CurlCancellation? = nil,
        completion: @escaping @Sendable (Result<HTTPResponse, CurlError>) -> Void
    ) {
        if cancellation?.hasLapsed() == true {
            completion(.failure(CurlError(cancelled: ())))
            return
        }
        let job = Job(
            request: request,
            notBefore: notBefore,
            limiter: limiter,
            gate: gate,
            deadline: deadline,
            cancellation: cancellation,
            completion: completion
        )
        let (accepted, wasEmpty) = shared.withLock { state -> (Bool, Bool) in
            guard !state.stopping else { return (false, false) }
            state.incoming.append(job)
            return (true, state.incoming.count == 1)
        }
        guard accepted else {
            completion(.failure(CurlError(shutdown: ())))
            return
        }
        // The driver takes the whole queue at once: only the submission that finds it empty needs to wake it.
        if wasEmpty { curl_multi_wakeup(multi) }
    }

    /// Makes the loop look at its waiting requests again now, for example when a gate that held them opened.
    public func wake() {
        curl_multi_wakeup(multi)
    }

    /// Cancels every request submitted with `cancellation`: those waiting complete at once, running transfers are
    /// stopped, each with a ``CurlError`` whose `isCancelled` is true. Requests submitted with it later complete so
    /// at once.

    public func cancel(_ cancellation: CurlCancellation) {
        cancellation.markCancelled()
        shared.withLock { $0.cancelling = true }
        curl_multi_wakeup(multi)
    }

    /// How the driver loop has spent its time, for tests and diagnostics.
    public struct Statistics: Sendable, Equatable {
        /// Times the loop waited in `curl_multi_poll`.
        public var polls = 0
        /// Waits that ran to their timeout although a request was ready to start when the wait began: a stall.
        public var stalledPolls = 0
        /// Transfers completed, successfully or not.
        public var completed = 0
    }

    /// The loop's counters so far.
    public var statistics: Statistics { stats.withLock { $0 } }

    /// Sends one request and waits for its response, from a thread that may block.
    public func perform(_ request: HTTPRequest) throws -> HTTPResponse {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<HTTPResponse, CurlError>?>(nil)
        submit(request) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }

    /// Fails queued requests that have not started, lets running ones finish, and stops the thread.
    ///
    /// Calling it again, from any thread, returns at once.
    public func shutdown() {
        let (started, alreadyStopped) = shared.withLock { state in
            defer {
                state.stopping = true
                state.stopped = true
            }
            return (state.started, state.stopped)
        }
        guard !alreadyStopped else { return }
        guard started else {
            curl_multi_cleanup(multi)
            return
        }
        curl_multi_wakeup(multi)
        finished.wait()
    }

    // MARK: - Driver thread

    private func runLoop() {
        var waiting: [Job] = []
        var running: [UInt: Job] = [:]
        var idleHandles: [CurlHandle] = []
        var finished: [(Job, Result<HTTPResponse, CurlError>)] = []
        defer {
            idleHandles.removeAll()
            curl_multi_cleanup(multi)
        }
        while true {
            let (incoming, stopping, cancelling) = shared.withLock { state in
                defer {
                    state.incoming.removeAll(keepingCapacity: true)
                    state.cancelling = false
                }
                return (state.incoming, state.stopping, state.cancelling)
            }
            waiting.append(contentsOf: incoming)
            if cancelling { removeCancelled(&waiting, running: &running, idle: &idleHandles, now: .now) }
            if stopping {
                for job in waiting { job.completion(.failure(CurlError(shutdown: ()))) }
                waiting.removeAll()
                if running.isEmpty { return }
            }

            let now = ContinuousClock.now
            // A transfer whose sender's lease ran out while it was under way (the whole process was frozen, say)
            // stops before libcurl writes any more of it: someone else sends that message now.
            if running.values.contains(where: { $0.cancellation?.hasLapsed(at: now) == true }) {
                removeCancelled(&waiting, running: &running, idle: &idleHandles, now: now)
            }
            let schedule = startReady(&waiting, running: &running, idle: &idleHandles, now: now)

            var stillRunning: Int32 = 0
            curl_multi_perform(multi, &stillRunning)
            var remaining: Int32 = 0
            while let message = curl_multi_info_read(multi, &remaining) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                let code = message.pointee.data.result
                curl_multi_remove_handle(multi, easy)
                guard let job = running.removeValue(forKey: UInt(bitPattern: easy)), let handle = job.handle else {
                    continue
                }
                finished.append((job, handle.result(code)))
                job.handle = nil
                idleHandles.append(handle)
            }
            // Counted before the completions run, so that whoever a completion wakes sees the count.
            if !finished.isEmpty { stats.withLock { $0.completed += finished.count } }
            for (job, result) in finished { job.completion(result) }
            finished.removeAll(keepingCapacity: true)

            // Requests were held back only because every slot was taken, and slots are free now: go round at once.
            // A local gateway answers inside the same perform call that sent the request, so this is the common
            // case under load, and sleeping here would leave the slots idle until the poll timed out.
            if schedule.heldForSlot && running.count < maxInFlight { continue }
            let timeout = schedule.nextWake.map { max(0, Self.milliseconds(until: $0)) } ?? 1000
            let pollStarted = ContinuousClock.now
            curl_multi_poll(multi, nil, 0, Int32(min(timeout, 1000)), nil)
            let timedOut = timeout > 0 && Self.milliseconds(until: pollStarted) <= -timeout
            stats.withLock { stats in
                stats.polls += 1
                if timedOut && schedule.heldForSlot { stats.stalledPolls += 1 }
            }
        }
    }

    /// Completes cancelled (or lapsed) jobs: waiting ones at once, running ones after taking their transfer off the
    /// multi handle.
    private func removeCancelled(
        _ waiting: inout [Job],
        running: inout [UInt: Job],
        idle: inout [CurlHandle],
        now: ContinuousClock.Instant
    ) {
        let stopped = { (job: Job) in job.cancellation?.hasLapsed(at: now) == true }
        var cancelled = waiting.filter(stopped)
        waiting.removeAll(where: stopped)
        var sent: Set<ObjectIdentifier> = []
        for (key, job) in running where stopped(job) {
            running.removeValue(forKey: key)
            if let handle = job.handle {
                if handle.requestSent { sent.insert(ObjectIdentifier(job)) }
                curl_multi_remove_handle(multi, handle.raw)
                job.handle = nil
                idle.append(handle)
            }
            cancelled.append(job)
        }
        guard !cancelled.isEmpty else { return }
        stats.withLock { $0.completed += cancelled.count }
        for job in cancelled {
            job.completion(.failure(CurlError(cancelled: (), requestSent: sent.contains(ObjectIdentifier(job)))))
        }
    }

    /// What held back the requests that did not start.
    private struct Schedule {
        /// Requests were left waiting because every slot was taken.
        var heldForSlot = false
        /// The earliest instant a request held back by its time or rate limit may start.
        var nextWake: ContinuousClock.Instant?
    }

    /// Starts every waiting request whose time has come and whose rate limit allows, while slots are free.
    private func startReady(
        _ waiting: inout [Job],
        running: inout [UInt: Job],
        idle: inout [CurlHandle],
        now: ContinuousClock.Instant
    ) -> Schedule {
        var schedule = Schedule()
        var index = 0
        while index < waiting.count {
            guard running.count < maxInFlight else {
                // The rest waits for a slot; a finished transfer wakes the loop, which then looks at them again.
                schedule.heldForSlot = true
                break
            }
            let job = waiting[index]
            if job.cancellation?.hasLapsed(at: now) == true {
                // Its sender's lease ran out (or it was cancelled) while it waited: someone else sends it now.
                waiting.swapAt(index, waiting.count - 1)
                waiting.removeLast()
                stats.withLock { $0.completed += 1 }
                job.completion(.failure(CurlError(cancelled: ())))
                continue
            }
            if job.notBefore > now {
                schedule.nextWake = min(schedule.nextWake ?? job.notBefore, job.notBefore)
                index += 1
                continue
            }
            if let gate = job.gate, let ready = gate.admit(now: now) {
                if let deadline = job.deadline {
                    guard deadline > now else {
                        waiting.swapAt(index, waiting.count - 1)
                        waiting.removeLast()
                        stats.withLock { $0.completed += 1 }
                        job.completion(.failure(CurlError(heldPastDeadline: ())))
                        continue
                    }
                    schedule.nextWake = min(schedule.nextWake ?? deadline, deadline)
                }
                schedule.nextWake = min(schedule.nextWake ?? ready, ready)
                index += 1
                continue
            }
            if let limiter = job.limiter, let ready = limiter.acquire(now: now) {
                schedule.nextWake = min(schedule.nextWake ?? ready, ready)
                index += 1
                continue
            }
            // Order among waiting requests does not matter; removing by swap keeps this loop linear.
            waiting.swapAt(index, waiting.count - 1)
            waiting.removeLast()
            let handle = idle.popLast() ?? CurlHandle()
            do {
                try handle.prepare(job.request)
                job.handle = handle
                curl_multi_add_handle(multi, handle.raw)
                running[UInt(bitPattern: handle.raw)] = job
            } catch let error as CurlError {
                idle.append(handle)
                job.completion(.failure(error))
            } catch {
                idle.append(handle)
                job.completion(.failure(CurlError(code: CURLE_FAILED_INIT, detail: "\(error)", operation: "setopt")))
            }
        }
        return schedule
    }

    private static func milliseconds(until instant: ContinuousClock.Instant) -> Int {
        let duration = instant - ContinuousClock.now
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}

extension CurlError {
    /// The driver stopped before the request could start.
    init(shutdown: Void) {
        self.init(code: CURLE_ABORTED_BY_CALLBACK, detail: "driver shut down", operation: "submit")
    }

    /// Whether the driver refused the request because it is shutting down.
    public var isShutdown: Bool { operation == "submit" }

    /// The request's gate held it until its deadline: it never started.
    init(heldPastDeadline: Void) {
        self.init(code: CURLE_OPERATION_TIMEDOUT, detail: "held by its gate until its deadline", operation: "gate")
    }

    /// Whether the request's gate (a circuit breaker) held it until its deadline, so that it never started.
    public var isHeldPastDeadline: Bool { operation == "gate" }

    /// The request carried a value that could end a protocol line early (``HTTPRequest/unsafePart``): nothing of it
    /// was sent.
    init(unsafeRequest part: String) {
        self.init(
            code: CURLE_BAD_FUNCTION_ARGUMENT,
            detail: "",
            operation: "refused: \(part) carries a line break, a control character or an angle bracket"
        )
    }

    /// Whether the request was refused before anything was sent, for carrying a value unsafe on the wire.
    public var isUnsafeRequest: Bool { operation.hasPrefix("refused: ") }
}

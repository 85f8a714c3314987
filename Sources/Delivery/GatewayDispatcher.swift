public import Curl
public import Foundation
public import Logging

/// Delivers messages through one gateway with retries, a rate limit and a shared libcurl driver.
public final class GatewayDispatcher: Sendable {
    public let gateway: any Gateway
    private let driver: CurlMultiDriver
    private let retry: RetryPolicy
    private let limiter: RateLimiter?
    private let logger: Logger
    /// Recipients per request: 1 sends a request per message; more (up to the gateway's maximum) sends one email
    /// content to that many recipients at once through a ``BatchEmailGateway``.
    public let recipientsPerRequest: Int
    /// What happens to a message that may have gone out, on a gateway that neither drops repeats nor can be asked.
    public let onUnknown: UnknownPolicy
    /// Seconds to wait before looking a message up in the provider's records, so that a request still being handled
    /// there shows.
    private let lookupDelay: TimeInterval
    /// Holds this gateway's requests while it is down.
    public let breaker: CircuitBreaker
    private let metrics: DeliveryMetrics

    /// - Parameters:
    ///   - ratePerSecond: the gateway's rate limit; `nil` for none.
    ///   - recipientsPerRequest: more than 1 only for a ``BatchEmailGateway``, at most its maximum.
    ///   - onUnknown: the policy for a message whose delivery is unknown, where the provider cannot be asked.
    ///   - lookupDelay: seconds between an unanswered request and the lookup of its message.
    ///   - breakerThreshold: failures in a row (no connection, timeout, 5xx) that open the circuit breaker.
    public init(
        gateway: any Gateway,
        driver: CurlMultiDriver,
        retry: RetryPolicy = RetryPolicy(),
        ratePerSecond: Double? = nil,
        recipientsPerRequest: Int = 1,
        onUnknown: UnknownPolicy = .skip,
        lookupDelay: TimeInterval = 10,
        breakerThreshold: Int = 10,
        logger: Logger
    ) {
        precondition(
            recipientsPerRequest == 1
                || (gateway as? any BatchEmailGateway).map { recipientsPerRequest <= $0.maxRecipientsPerRequest }
                    == true,
            "recipients per request above 1 needs a batch email gateway and at most its maximum"
        )
        self.recipientsPerRequest = recipientsPerRequest
        self.onUnknown = onUnknown
        self.lookupDelay = lookupDelay
        self.gateway = gateway
        self.driver = driver
        self.retry = retry
        self.limiter = ratePerSecond.map { RateLimiter(ratePerSecond: $0) }
        var logger = logger
        logger[metadataKey: "gateway"] = "\(gateway.name)"
        self.logger = logger
        let metrics = DeliveryMetrics(gateway: gateway.name)
        self.metrics = metrics
        breaker = CircuitBreaker(threshold: breakerThreshold) { [logger] snapshot in
            metrics.breakerChanged(open: snapshot.unavailableSince != nil)
            if let since = snapshot.unavailableSince {
                logger.warning(
                    "gateway unavailable; its messages wait for it instead of using up their retries",
                    metadata: ["since": "\(since)", "last.error": "\(snapshot.lastError ?? "")"]
                )
            } else {
                logger.notice("gateway available again; waiting messages go out")
                driver.wake()
            }
        }
    }

    /// Delivers `message`, retrying as the policy allows, and calls `completion` once with the outcome.
    ///
    /// `completion` runs on the libcurl driver thread: it must be quick.
    public func dispatch(
        _ message: OutgoingMessage,
        cancellation: CurlCancellation? = nil,
        completion: @escaping @Sendable (DeliveryOutcome) -> Void
    ) {
        dispatch(request(for: message), cancellation: cancellation, completion: completion)
    }

    /// Stops every message dispatched with `cancellation`, its scheduled retries included: each completes as
    /// abandoned (`system_error`), to be sent later by whoever holds the send, or as ``DeliveryOutcome/unknown``
    /// when its request was out on a gateway that does not drop repeats.
    public func cancel(_ cancellation: CurlCancellation) {
        driver.cancel(cancellation)
    }

    /// The gateway request for a message; building it is the costly part of a dispatch, so callers with many
    /// messages build them in parallel and hand them to ``dispatch(_:completion:)-(HTTPRequest,_)``.
    public func request(for message: OutgoingMessage) -> HTTPRequest {
        gateway.request(for: message)
    }

    /// The gateway for batch requests, when requests carry more than one recipient.
    public var batchGateway: (any BatchEmailGateway)? {
        recipientsPerRequest > 1 ? gateway as? any BatchEmailGateway : nil
    }

    /// Delivers a request built by ``request(for:)`` (or a batch request), retrying it as the policy allows.
    ///
    /// On a gateway that does not drop repeats (``Gateway/isIdempotent``), a request that may have reached it and got
    /// no answer is not retried blind: it is looked up in the provider's records with `probe` where the gateway can
    /// (``ReconcilingGateway``), and otherwise settled by the `on_unknown` policy.
    ///
    /// - Parameters:
    ///   - probe: what identifies the message in the provider's records, for a ``ReconcilingGateway``.
    ///   - unknown: the message was recorded ``DeliveryOutcome/unknown`` before: it is settled before it is sent.
    public func dispatch(
        _ request: HTTPRequest,
        probe: DeliveryProbe? = nil,
        unknown: Bool = false,
        cancellation: CurlCancellation? = nil,
        completion: @escaping @Sendable (DeliveryOutcome) -> Void
    ) {
        let message = Message(
            request: request,
            probe: probe,
            cancellation: cancellation,
            completion: completion
        )
        if unknown && !gateway.isIdempotent {
            settle(message, attempts: 0, failures: 0, detail: "left unknown by an earlier worker")
        } else {
            attempt(1, failures: 0, message: message, notBefore: .now, settled: nil)
        }
    }

    /// One message on its way, with what every attempt of it shares.
    private struct Message: Sendable {
        let request: HTTPRequest
        let probe: DeliveryProbe?
        let cancellation: CurlCancellation?
        let completion: @Sendable (DeliveryOutcome) -> Void
        /// The first attempt's start, from which the time budget runs.
        let since = ContinuousClock.now
    }

    /// - Parameters:
    ///   - number: this attempt, 1-based, every try counted (recorded as the message's attempts).
    ///   - failures: earlier attempts that count against the cap: not those answered 429 or with `Retry-After`.
    ///   - settled: how an unknown outcome of the message was settled, when this attempt follows one.
    private func attempt(
        _ number: Int,
        failures: Int,
        message: Message,
        notBefore: ContinuousClock.Instant,
        settled: UnknownSettlement?
    ) {
        let completion = message.completion
        driver.submit(
            message.request,
            notBefore: notBefore,
            limiter: limiter,
            gate: breaker,
            deadline: message.since + .milliseconds(Int64(retry.budget * 1000)),
            cancellation: message.cancellation
        ) { [self] result in
            let verdict: GatewayVerdict
            record(result)
            metrics.observe(result)
            switch result {
            case .success(let response):
                verdict = gateway.verdict(for: response)
            case .failure(let error) where error.isHeldPastDeadline:
                completion(
                    .failed(
                        .retriesExhausted,
                        detail: "\(gateway.name) unavailable until the end of the retry budget",
                        attempts: number - 1,
                        settled: settled
                    )
                )
                return
            case .failure(let error) where error.isUnsafeRequest:
                // The message itself is at fault, not the gateway: it fails alone and is never tried again.
                completion(.failed(.gatewayRefused, detail: error.description, attempts: number, settled: settled))
                return
            case .failure(let error) where error.isShutdown:
                completion(.failed(.systemError, detail: "delivery stopped: daemon shutting down", attempts: number))
                return
            case .failure(let error) where error.isCancelled:
                if error.requestSent && !gateway.isIdempotent {
                    completion(
                        .unknown(detail: "cancelled with its request out: the send is no longer ours", attempts: number)
                    )
                } else {
                    completion(
                        .failed(
                            .systemError,
                            detail: "delivery cancelled: the send is no longer ours",
                            attempts: number
                        )
                    )
                }
                return
            case .failure(let error) where error.requestSent && !gateway.isIdempotent:
                // The provider may have delivered it: sending it again could be a second message.
                settle(message, attempts: number, failures: failures + 1, detail: error.description)
                return
            case .failure(let error):
                verdict = .retry(after: nil, detail: error.description)
            }
            switch verdict {
            case .accepted(let id, let segments):
                completion(.sent(messageID: id, segments: segments, attempts: number, settled: settled))
            case .refused(let reason, let detail):
                completion(.failed(reason, detail: detail, attempts: number, settled: settled))
            case .retry(let after, let detail), .throttled(let after, let detail):
                // Being told to slow down is not a failure of the message: it waits, but keeps its attempts.
                var counted = failures
                // While the breaker holds the gateway's requests, a failure says nothing about this message.
                if case .retry = verdict, after == nil, !breaker.snapshot.isOpen { counted += 1 }
                guard let delay = retryDelay(message, afterAttempt: number, failures: counted, retryAfter: after) else {
                    logger.debug("giving up on message", metadata: ["attempts": "\(number)", "last": "\(detail)"])
                    completion(.failed(.retriesExhausted, detail: detail, attempts: number, settled: settled))
                    return
                }
                logger.trace("retrying message", metadata: ["attempt": "\(number)", "delay": "\(delay)"])
                metrics.retried()
                attempt(number + 1, failures: counted, message: message, notBefore: .now + delay, settled: settled)
            }
        }
    }

    /// The wait before the next attempt, or `nil` when the budget (or the cap) does not allow one.
    private func retryDelay(
        _ message: Message,
        afterAttempt attempt: Int,
        failures: Int,
        retryAfter: TimeInterval?
    ) -> Duration? {
        let delay = retry.delay(afterAttempt: max(1, attempt), retryAfter: retryAfter)
        let elapsed = Self.seconds(ContinuousClock.now - message.since)
        guard retry.allowsRetry(failures: failures, elapsed: elapsed, delay: delay) else { return nil }
        return .milliseconds(Int64(delay * 1000))
    }

    /// Decides a message whose request may have reached a gateway that does not drop repeats: looked up in the
    /// provider's records where it can be, otherwise as the `on_unknown` policy says.
    private func settle(_ message: Message, attempts: Int, failures: Int, detail: String) {
        if let reconciling = gateway as? any ReconcilingGateway, let probe = message.probe {
            // The provider may still be handling the request that went unanswered: look only after a while.
            lookUp(
                reconciling.lookupRequest(for: probe),
                in: reconciling,
                probe: probe,
                message: message,
                attempts: attempts,
                failures: failures,
                lookups: 0,
                notBefore: .now + .milliseconds(Int64(lookupDelay * 1000))
            )
            return
        }
        switch onUnknown {
        case .skip:
            logger.debug("delivery unconfirmed; not sent again (on_unknown = skip)", metadata: ["last": "\(detail)"])
            message.completion(
                .failed(.deliveryUnconfirmed, detail: detail, attempts: attempts, settled: .skippedByPolicy)
            )
        case .resend:
            guard let delay = retryDelay(message, afterAttempt: attempts, failures: failures, retryAfter: nil) else {
                message.completion(.unknown(detail: detail, attempts: attempts))
                return
            }
            attempt(
                attempts + 1,
                failures: failures,
                message: message,
                notBefore: .now + delay,
                settled: .resentByPolicy
            )
        }
    }

    /// Reads the provider's records for the message, page by page, and sends it again only when they do not hold it.
    private func lookUp(
        _ request: HTTPRequest,
        in reconciling: any ReconcilingGateway,
        probe: DeliveryProbe,
        message: Message,
        attempts: Int,
        failures: Int,
        lookups: Int,
        notBefore: ContinuousClock.Instant
    ) {
        driver.submit(request, notBefore: notBefore, limiter: nil, cancellation: message.cancellation) {
            [self] result in
            let verdict: LookupVerdict
            switch result {
            case .failure(let error) where error.isShutdown || error.isCancelled:
                message.completion(.unknown(detail: "reconciliation stopped: \(error)", attempts: attempts))
                return
            case .failure(let error):
                verdict = .unavailable(detail: error.description)
            case .success(let response):
                verdict = reconciling.lookupVerdict(for: response, probe: probe)
            }
            switch verdict {
            case .found(let id):
                logger.debug("unknown message found at the provider", metadata: ["message.id": "\(id ?? "")"])
                message.completion(.sent(messageID: id, segments: nil, attempts: attempts, settled: .foundAtProvider))
            case .notFound:
                attempt(attempts + 1, failures: failures, message: message, notBefore: .now, settled: .notFoundResent)
            case .nextPage(let url):
                lookUp(
                    reconciling.lookupRequest(page: url),
                    in: reconciling,
                    probe: probe,
                    message: message,
                    attempts: attempts,
                    failures: failures,
                    lookups: lookups,
                    notBefore: .now
                )
            case .unavailable(let detail):
                guard let delay = retryDelay(message, afterAttempt: lookups + 1, failures: 0, retryAfter: nil) else {
                    message.completion(.unknown(detail: "provider records unavailable: \(detail)", attempts: attempts))
                    return
                }
                lookUp(
                    request,
                    in: reconciling,
                    probe: probe,
                    message: message,
                    attempts: attempts,
                    failures: failures,
                    lookups: lookups + 1,
                    notBefore: .now + delay
                )
            }
        }
    }

    /// Tells the breaker what an answer says of the gateway: up (any status but 5xx and 408), or perhaps down.
    private func record(_ result: Result<HTTPResponse, CurlError>) {
        switch result {
        case .success(let response) where response.status >= 500 || response.status == 408:
            breaker.recordFailure("HTTP \(response.status)")
        case .success:
            breaker.recordSuccess()
        case .failure(let error)
        where error.isShutdown || error.isCancelled || error.isHeldPastDeadline || error.isUnsafeRequest:
            break
        case .failure(let error):
            breaker.recordFailure(error.description)
        }
    }

    private static func seconds(_ duration: Duration) -> TimeInterval {
        let (seconds, attoseconds) = duration.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}

public import Curl
import Foundation
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

    /// - Parameters:
    ///   - ratePerSecond: the gateway's rate limit; `nil` for none.
    ///   - recipientsPerRequest: more than 1 only for a ``BatchEmailGateway``, at most its maximum.
    public init(
        gateway: any Gateway,
        driver: CurlMultiDriver,
        retry: RetryPolicy = RetryPolicy(),
        ratePerSecond: Double? = nil,
        recipientsPerRequest: Int = 1,
        logger: Logger
    ) {
        precondition(
            recipientsPerRequest == 1
                || (gateway as? any BatchEmailGateway).map { recipientsPerRequest <= $0.maxRecipientsPerRequest }
                    == true,
            "recipients per request above 1 needs a batch email gateway and at most its maximum"
        )
        self.recipientsPerRequest = recipientsPerRequest
        self.gateway = gateway
        self.driver = driver
        self.retry = retry
        self.limiter = ratePerSecond.map { RateLimiter(ratePerSecond: $0) }
        var logger = logger
        logger[metadataKey: "gateway"] = "\(gateway.name)"
        self.logger = logger
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
    /// abandoned (`system_error`), to be sent later by whoever holds the send.
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
    public func dispatch(
        _ request: HTTPRequest,
        cancellation: CurlCancellation? = nil,
        completion: @escaping @Sendable (DeliveryOutcome) -> Void
    ) {
        attempt(
            1,
            failures: 0,
            request: request,
            since: .now,
            notBefore: .now,
            cancellation: cancellation,
            completion: completion
        )
    }

    /// - Parameters:
    ///   - number: this attempt, 1-based, every try counted (recorded as the message's attempts).
    ///   - failures: earlier attempts that count against the cap: not those answered 429 or with `Retry-After`.
    ///   - since: the first attempt's start, from which the time budget runs.
    private func attempt(
        _ number: Int,
        failures: Int,
        request: HTTPRequest,
        since: ContinuousClock.Instant,
        notBefore: ContinuousClock.Instant,
        cancellation: CurlCancellation?,
        completion: @escaping @Sendable (DeliveryOutcome) -> Void
    ) {
        driver.submit(request, notBefore: notBefore, limiter: limiter, cancellation: cancellation) { [self] result in
            let verdict: GatewayVerdict
            switch result {
            case .success(let response):
                verdict = gateway.verdict(for: response)
            case .failure(let error) where error.isShutdown:
                completion(.failed(.systemError, detail: "delivery stopped: daemon shutting down", attempts: number))
                return
            case .failure(let error) where error.isCancelled:
                completion(
                    .failed(.systemError, detail: "delivery cancelled: the send is no longer ours", attempts: number)
                )
                return
            case .failure(let error):
                verdict = .retry(after: nil, detail: error.description)
            }
            switch verdict {
            case .accepted(let id, let segments):
                completion(.sent(messageID: id, segments: segments, attempts: number))
            case .refused(let reason, let detail):
                completion(.failed(reason, detail: detail, attempts: number))
            case .retry(let after, let detail), .throttled(let after, let detail):
                // Being told to slow down is not a failure of the message: it waits, but keeps its attempts.
                var counted = failures
                if case .retry = verdict, after == nil { counted += 1 }
                let delay = retry.delay(afterAttempt: number, retryAfter: after)
                let elapsed = Self.seconds(ContinuousClock.now - since)
                guard retry.allowsRetry(failures: counted, elapsed: elapsed, delay: delay) else {
                    logger.debug(
                        "giving up on message",
                        metadata: ["attempts": "\(number)", "seconds": "\(Int(elapsed))", "last": "\(detail)"]
                    )
                    completion(.failed(.retriesExhausted, detail: detail, attempts: number))
                    return
                }
                logger.trace("retrying message", metadata: ["attempt": "\(number)", "delay": "\(delay)"])
                attempt(
                    number + 1,
                    failures: counted,
                    request: request,
                    since: since,
                    notBefore: .now.advanced(by: .milliseconds(Int64(delay * 1000))),
                    cancellation: cancellation,
                    completion: completion
                )
            }
        }
    }

    private static func seconds(_ duration: Duration) -> TimeInterval {
        let (seconds, attoseconds) = duration.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}

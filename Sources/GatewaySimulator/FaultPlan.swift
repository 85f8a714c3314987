/// The faults a simulator injects, shared by all its endpoints. Rates are shares of requests, 0 to 1.
public struct FaultPlan: Sendable, Codable, Equatable {
    /// Share of requests answered with `errorStatus`.
    public var errorRate: Double = 0
    public var errorStatus: Int = 503
    /// Share of requests answered 429 with `Retry-After: retryAfterSeconds` (without the header when it is negative).
    public var rateLimitRate: Double = 0
    public var retryAfterSeconds: Int = 1
    /// Share of requests delayed by `delayMilliseconds` before their answer (beyond a client's timeout, it times out).
    public var delayRate: Double = 0
    public var delayMilliseconds: Int = 0
    /// Share of requests whose connection is dropped after the headers, without a complete answer.
    public var dropRate: Double = 0
    /// Share of requests delivered and then left unanswered (the connection is dropped): the answer is lost after
    /// the message went out, as when a provider times out or a network path breaks at the wrong moment.
    public var lostAnswerRate: Double = 0
    /// Behave as SendGrid and Twilio do: a repeated idempotency key is delivered again, and counted as a
    /// duplicate a customer really got (``SimulatorStats/redelivered``).
    public var nonIdempotent = false
    /// Share of requests delivered and answered 200 with a body that is not the API's (an HTML error page).
    public var malformedRate: Double = 0
    /// Every message fails with 503 on its first `failFirstAttempts` attempts (counted per idempotency key), then
    /// succeeds: retries, deterministically.
    public var failFirstAttempts: Int = 0
    /// Recipients refused for good (HTTP 400).
    public var refuse: [String] = []
    /// Numbers refused as invalid (HTTP 400 with the provider's invalid-number error).
    public var invalidNumbers: [String] = []

    public init() {}

    enum CodingKeys: String, CodingKey {
        case errorRate = "error_rate", errorStatus = "error_status", rateLimitRate = "rate_limit_rate"
        case retryAfterSeconds = "retry_after_seconds", delayRate = "delay_rate"
        case delayMilliseconds = "delay_milliseconds", dropRate = "drop_rate", failFirstAttempts = "fail_first_attempts"
        case refuse, invalidNumbers = "invalid_numbers"
        case lostAnswerRate = "lost_answer_rate", nonIdempotent = "non_idempotent", malformedRate = "malformed_rate"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        errorRate = try container.decodeIfPresent(Double.self, forKey: .errorRate) ?? 0
        errorStatus = try container.decodeIfPresent(Int.self, forKey: .errorStatus) ?? 503
        rateLimitRate = try container.decodeIfPresent(Double.self, forKey: .rateLimitRate) ?? 0
        retryAfterSeconds = try container.decodeIfPresent(Int.self, forKey: .retryAfterSeconds) ?? 1
        delayRate = try container.decodeIfPresent(Double.self, forKey: .delayRate) ?? 0
        delayMilliseconds = try container.decodeIfPresent(Int.self, forKey: .delayMilliseconds) ?? 0
        dropRate = try container.decodeIfPresent(Double.self, forKey: .dropRate) ?? 0
        lostAnswerRate = try container.decodeIfPresent(Double.self, forKey: .lostAnswerRate) ?? 0
        nonIdempotent = try container.decodeIfPresent(Bool.self, forKey: .nonIdempotent) ?? false
        malformedRate = try container.decodeIfPresent(Double.self, forKey: .malformedRate) ?? 0
        failFirstAttempts = try container.decodeIfPresent(Int.self, forKey: .failFirstAttempts) ?? 0
        refuse = try container.decodeIfPresent([String].self, forKey: .refuse) ?? []
        invalidNumbers = try container.decodeIfPresent([String].self, forKey: .invalidNumbers) ?? []
    }
}

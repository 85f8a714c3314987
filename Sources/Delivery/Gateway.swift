public import Curl
public import Foundation
import WireJSON

/// What a gateway's response means for the message.
public enum GatewayVerdict: Sendable, Equatable {
    case accepted(messageID: String?, segments: Int?)
    case refused(FailureReason, detail: String)
    /// Try again, after `after` seconds when the gateway said so (`Retry-After`).
    case retry(after: TimeInterval?, detail: String)
    /// The gateway asks to slow down (429): try again after `after` seconds, or the backoff, without counting a
    /// failed attempt.
    case throttled(after: TimeInterval?, detail: String)
}

/// One gateway API: how to ask it to deliver a message, and how to read its answer.
public protocol Gateway: Sendable {
    /// A short name for logs, for example `sendgrid`; never a URL or a credential.
    var name: String { get }
    /// Whether the gateway drops a message repeated with the same idempotency key. Only then may a message whose
    /// request may have reached it be sent again blind; otherwise it is reconciled or settled by policy.
    var isIdempotent: Bool { get }
    func request(for message: OutgoingMessage) -> HTTPRequest
    func verdict(for response: HTTPResponse) -> GatewayVerdict
    /// Whether ``request(for:)`` takes ``MessageContent/escapedEmail(subject:html:text:)``: a gateway whose body is
    /// JSON. Others get ``MessageContent/email(subject:html:text:)``.
    var takesEscapedEmail: Bool { get }
}

extension Gateway {
    public var takesEscapedEmail: Bool { false }
}

/// Where a gateway is and how to reach it.
public struct GatewayEndpoint: Sendable {
    /// The full URL messages are posted to.
    public var url: String
    /// The credential: a bearer token, an API key, or an auth token.
    public var credential: String
    /// The sender: an email address or a number or sender id.
    public var from: String
    public var connectTimeout: Double
    public var totalTimeout: Double

    public init(url: String, credential: String, from: String, connectTimeout: Double = 5, totalTimeout: Double = 15) {
        self.url = url
        self.credential = credential
        self.from = from
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
    }
}

extension GatewayEndpoint {
    /// A JSON `POST` to the endpoint with a bearer token and the message's idempotency key, as the webhooks and
    /// SendGrid take it.
    func bearerJSONRequest(_ body: JSONBytes, idempotencyKey: String, repeatable: Bool) -> HTTPRequest {
        var request = HTTPRequest(
            method: "POST",
            url: url,
            headers: [
                ("Content-Type", "application/json"), ("Authorization", "Bearer \(credential)"),
                ("Idempotency-Key", idempotencyKey),
            ],
            body: body.data,
            connectTimeout: connectTimeout,
            totalTimeout: totalTimeout
        )
        request.repeatable = repeatable
        return request
    }
}

extension Gateway {
    /// The common reading of a status: 2xx accepted, 429 throttled, 5xx and 408 retried, other 4xx refused.
    func standardVerdict(
        _ response: HTTPResponse,
        accepted: (HTTPResponse) -> GatewayVerdict,
        refusal: (HTTPResponse) -> FailureReason = { _ in .gatewayRefused }
    ) -> GatewayVerdict {
        switch response.status {
        case 200..<300:
            return accepted(response)
        case 429:
            return .throttled(after: Self.retryAfter(response.headers["retry-after"]), detail: "HTTP 429 from \(name)")
        case 408, 500..<600:
            return .retry(
                after: Self.retryAfter(response.headers["retry-after"]),
                detail: "HTTP \(response.status) from \(name)"
            )
        default:
            let body = String(decoding: response.body.prefix(300), as: UTF8.self)
            return .refused(refusal(response), detail: "HTTP \(response.status) from \(name): \(body)")
        }
    }

    /// Reads `Retry-After` as seconds or as an HTTP date.
    static func retryAfter(_ value: String?) -> TimeInterval? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Double(value) { return max(0, seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: value).map { max(0, $0.timeIntervalSinceNow) }
    }

    /// A top-level field of the response's JSON body (see ``JSONFields``).
    func field(_ key: String, of response: HTTPResponse) -> String? {
        JSONFields.value(key, in: response.body)
    }
}

public import Curl
import Foundation

/// Coupond's generic JSON email webhook.
///
/// `POST <url>` with `Authorization: Bearer <credential>`, `Idempotency-Key: <key>` and
/// `{"from", "to", "subject", "html", "text", "idempotency_key"}`; a 2xx answer may carry `{"id": "..."}`.
public struct WebhookEmailGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public var name: String { "email-webhook" }

    public init(endpoint: GatewayEndpoint) { self.endpoint = endpoint }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard case .email(let subject, let html, let text) = message.content else {
            preconditionFailure("WebhookEmailGateway given a non-email message")
        }
        return endpoint.bearerJSONRequest(
            [
                "from": endpoint.from, "to": message.to, "subject": subject, "html": html, "text": text,
                "idempotency_key": message.idempotencyKey,
            ],
            idempotencyKey: message.idempotencyKey
        )
    }

    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        standardVerdict(response) { .accepted(messageID: json($0)["id"] as? String, segments: nil) }
    }
}

/// Coupond's generic JSON SMS webhook.
///
/// `POST <url>` with `Authorization: Bearer <credential>`, `Idempotency-Key: <key>` and
/// `{"from", "to", "text", "idempotency_key"}`; a 2xx answer may carry `{"id": "...", "segments": 2}`. A 4xx answer
/// with `{"error": "invalid_number"}` marks the number invalid.
public struct WebhookSMSGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public var name: String { "sms-webhook" }

    public init(endpoint: GatewayEndpoint) { self.endpoint = endpoint }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard case .sms(let text) = message.content else {
            preconditionFailure("WebhookSMSGateway given a non-SMS message")
        }
        return endpoint.bearerJSONRequest(
            [
                "from": endpoint.from, "to": message.to, "text": text, "idempotency_key": message.idempotencyKey,
            ],
            idempotencyKey: message.idempotencyKey
        )
    }

    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        standardVerdict(
            response,
            accepted: { response in
                let body = json(response)
                return .accepted(messageID: body["id"] as? String, segments: body["segments"] as? Int)
            },
            refusal: { json($0)["error"] as? String == "invalid_number" ? .invalidMobileNumber : .gatewayRefused }
        )
    }
}

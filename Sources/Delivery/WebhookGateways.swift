public import Curl
import Foundation
import WireJSON

/// Coupond's generic JSON email webhook.
///
/// `POST <url>` with `Authorization: Bearer <credential>`, `Idempotency-Key: <key>` and
/// `{"from", "to", "subject", "html", "text", "idempotency_key", "headers"}`, where `headers` holds the email's
/// `List-Unsubscribe` and `List-Unsubscribe-Post`; a 2xx answer may carry `{"id": "..."}`.
public struct WebhookEmailGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public var name: String { "email-webhook" }
    /// The webhook contract: a repeated `Idempotency-Key` is answered as the first request and not delivered again.
    public var isIdempotent: Bool { true }

    public init(endpoint: GatewayEndpoint) { self.endpoint = endpoint }

    public var takesEscapedEmail: Bool { true }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard let (subject, html, text) = message.content.jsonEmailParts else {
            preconditionFailure("WebhookEmailGateway given a non-email message")
        }
        var body = JSONBytes(capacity: 384 + html.byteCount + text.byteCount)
        body.raw(#"{"to":"#)
        body.string(message.to)
        body.raw(",")
        appendContent(to: &body, subject: subject, html: html, text: text, idempotencyKey: message.idempotencyKey)
        body.emailHeaders(unsubscribeURL: message.unsubscribeURL)
        body.raw("}")
        return endpoint.bearerJSONRequest(body, idempotencyKey: message.idempotencyKey, repeatable: isIdempotent)
    }

    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        standardVerdict(response) { .accepted(messageID: field("id", of: $0), segments: nil) }
    }

    /// `"from", "subject", "html", "text", "idempotency_key"`: what one email and a batch's shared content both carry.
    private func appendContent(
        to body: inout JSONBytes,
        subject: String,
        html: JSONText,
        text: JSONText,
        idempotencyKey: String
    ) {
        body.raw(#""from":"#)
        body.string(endpoint.from)
        body.raw(#","subject":"#)
        body.string(subject)
        body.raw(#","html":"#)
        body.text(html)
        body.raw(#","text":"#)
        body.text(text)
        body.raw(#","idempotency_key":"#)
        body.string(idempotencyKey)
    }
}

extension WebhookEmailGateway: BatchEmailGateway {
    /// At most 1,000 recipients per request, as with SendGrid.
    public var maxRecipientsPerRequest: Int { 1000 }

    /// The webhook's batch form: the shared content once, and one entry per recipient.
    ///
    /// `{"from", "subject", "html", "text", "idempotency_key", "recipients": [{"to", "substitutions",
    /// "idempotency_key", "headers"}]}`. The receiver replaces each substitution key (for example `-coupond_link-`) in the
    /// subject and both parts with the recipient's value, and delivers one email per recipient; the request's own key
    /// (also in the `Idempotency-Key` header) names the batch. A 2xx answer accepts every recipient, any other
    /// refuses or retries them all.
    public func batchRequest(
        subject: String,
        html: String,
        text: String,
        recipients: [BatchEmailRecipient],
        idempotencyKey: String
    ) -> HTTPRequest {
        precondition(recipients.count <= maxRecipientsPerRequest, "too many recipients for one webhook request")
        var body = JSONBytes(capacity: 512 + html.utf8.count + text.utf8.count + recipients.count * 400)
        body.raw("{")
        appendContent(
            to: &body,
            subject: subject,
            html: .plain(html),
            text: .plain(text),
            idempotencyKey: idempotencyKey
        )
        body.raw(#","recipients":["#)
        for (index, recipient) in recipients.enumerated() {
            if index > 0 { body.raw(",") }
            body.raw(#"{"to":"#)
            body.string(recipient.to)
            body.raw(#","substitutions":"#)
            body.substitutions(recipient.substitutions)
            body.raw(#","idempotency_key":"#)
            body.string(recipient.idempotencyKey)
            body.emailHeaders(unsubscribeURL: recipient.unsubscribeURL)
            body.raw("}")
        }
        body.raw("]}")
        return endpoint.bearerJSONRequest(body, idempotencyKey: idempotencyKey, repeatable: isIdempotent)
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
    /// The webhook contract: a repeated `Idempotency-Key` is answered as the first request and not delivered again.
    public var isIdempotent: Bool { true }

    public init(endpoint: GatewayEndpoint) { self.endpoint = endpoint }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard case .sms(let text) = message.content else {
            preconditionFailure("WebhookSMSGateway given a non-SMS message")
        }
        var body = JSONBytes(capacity: 128 + text.utf8.count)
        body.object(["from": endpoint.from, "to": message.to, "text": text, "idempotency_key": message.idempotencyKey])
        return endpoint.bearerJSONRequest(body, idempotencyKey: message.idempotencyKey, repeatable: isIdempotent)
    }

    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        standardVerdict(
            response,
            accepted: { response in
                .accepted(
                    messageID: field("id", of: response),
                    segments: field("segments", of: response).flatMap { Int($0) }
                )
            },
            refusal: { field("error", of: $0) == "invalid_number" ? .invalidMobileNumber : .gatewayRefused }
        )
    }
}

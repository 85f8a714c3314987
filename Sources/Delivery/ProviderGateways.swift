public import Curl
import Foundation
import WireJSON

/// SendGrid's v3 Mail Send API (`POST /v3/mail/send`).
///
/// Related documentation: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
public struct SendGridGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public var name: String { "sendgrid" }
    /// SendGrid's mail send has no idempotency key: a repeated request is a second email.
    public var isIdempotent: Bool { false }

    /// - Parameter endpoint: `url` is the full mail-send URL, normally `https://api.sendgrid.com/v3/mail/send`;
    ///   `credential` is the API key.
    public init(endpoint: GatewayEndpoint) { self.endpoint = endpoint }

    public var takesEscapedEmail: Bool { true }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard let (subject, html, text) = message.content.jsonEmailParts else {
            preconditionFailure("SendGridGateway given a non-email message")
        }
        var body = JSONBytes(capacity: 320 + html.byteCount + text.byteCount)
        // The key goes in the personalization's custom_args, which SendGrid's API description types as an object (the
        // top-level one is a string there). SendGrid does not deduplicate by it: it tags the message for matching.
        body.raw(#"{"personalizations":[{"to":[{"email":"#)
        body.string(message.to)
        body.raw(#"}],"custom_args":{"idempotency_key":"#)
        body.string(message.idempotencyKey)
        body.raw("}")
        body.emailHeaders(unsubscribeURL: message.unsubscribeURL)
        body.raw(#"}],"#)
        appendSharedFields(to: &body, subject: subject, html: html, text: text)
        body.raw("}")
        return endpoint.bearerJSONRequest(body, idempotencyKey: message.idempotencyKey, repeatable: isIdempotent)
    }

    /// The sender, subject and content, which every recipient of a request shares.
    func appendSharedFields(to body: inout JSONBytes, subject: String, html: JSONText, text: JSONText) {
        body.raw(#""from":{"email":"#)
        body.string(endpoint.from)
        body.raw(#"},"subject":"#)
        body.string(subject)
        // SendGrid requires text/plain before text/html.
        body.raw(#","content":[{"type":"text/plain","value":"#)
        body.text(text)
        body.raw(#"},{"type":"text/html","value":"#)
        body.text(html)
        body.raw("}]")
    }

    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        standardVerdict(response) { .accepted(messageID: $0.headers["x-message-id"], segments: nil) }
    }
}

/// One recipient of a batch email request: the address, the message's own idempotency key, and the values of the
/// content's placeholders.
public struct BatchEmailRecipient: Sendable, Equatable {
    public var to: String
    public var idempotencyKey: String
    public var substitutions: [String: String]
    /// The recipient's one-click unsubscribe URL, for their own `List-Unsubscribe` headers.
    public var unsubscribeURL: String?

    public init(to: String, idempotencyKey: String, substitutions: [String: String], unsubscribeURL: String? = nil) {
        self.to = to
        self.idempotencyKey = idempotencyKey
        self.substitutions = substitutions
        self.unsubscribeURL = unsubscribeURL
    }
}

/// A gateway that takes one email content for many recipients in one request, filling in each one's values.
public protocol BatchEmailGateway: Gateway {
    /// Most recipients one request may carry.
    var maxRecipientsPerRequest: Int { get }

    /// One request for `recipients`, whose content holds placeholders that each recipient's substitutions fill in.
    ///
    /// - Parameter idempotencyKey: the request's own key, the same for every attempt of this batch.
    func batchRequest(
        subject: String,
        html: String,
        text: String,
        recipients: [BatchEmailRecipient],
        idempotencyKey: String
    ) -> HTTPRequest
}

extension SendGridGateway: BatchEmailGateway {
    /// SendGrid takes up to 1,000 personalizations per request.
    public var maxRecipientsPerRequest: Int { 1000 }

    /// A mail-send request with one personalization per recipient: its address, its substitutions (SendGrid
    /// replaces each key in the subject and both parts), its idempotency key as a custom argument and its own
    /// unsubscribe headers.
    public func batchRequest(
        subject: String,
        html: String,
        text: String,
        recipients: [BatchEmailRecipient],
        idempotencyKey: String
    ) -> HTTPRequest {
        precondition(recipients.count <= maxRecipientsPerRequest, "too many recipients for one SendGrid request")
        var body = JSONBytes(capacity: 512 + html.utf8.count + text.utf8.count + recipients.count * 400)
        body.raw(#"{"personalizations":["#)
        for (index, recipient) in recipients.enumerated() {
            if index > 0 { body.raw(",") }
            body.raw(#"{"to":[{"email":"#)
            body.string(recipient.to)
            body.raw(#"}],"substitutions":"#)
            body.substitutions(recipient.substitutions)
            body.raw(#","custom_args":{"idempotency_key":"#)
            body.string(recipient.idempotencyKey)
            body.raw("}")
            body.emailHeaders(unsubscribeURL: recipient.unsubscribeURL)
            body.raw("}")
        }
        body.raw("],")
        appendSharedFields(to: &body, subject: subject, html: .plain(html), text: .plain(text))
        body.raw("}")
        return endpoint.bearerJSONRequest(body, idempotencyKey: idempotencyKey, repeatable: isIdempotent)
    }
}

/// Twilio's Programmable Messaging API (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`).
///
/// Related documentation: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
public struct TwilioGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public let accountSID: String
    public var name: String { "twilio" }
    /// Twilio's `CreateMessage` declares no idempotency parameter: a repeated request is a second SMS, paid for.
    public var isIdempotent: Bool { false }

    /// - Parameters:
    ///   - endpoint: `url` is the API base, normally `https://api.twilio.com`; `credential` is the auth token;
    ///     `from` is the sending number, or a Messaging Service SID (`MG…`).
    ///   - accountSID: the account (`AC…`), also the basic-auth user.
    public init(endpoint: GatewayEndpoint, accountSID: String) {
        self.endpoint = endpoint
        self.accountSID = accountSID
    }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard case .sms(let text) = message.content else {
            preconditionFailure("TwilioGateway given a non-SMS message")
        }
        let sender = Self.isMessagingServiceSID(endpoint.from) ? "MessagingServiceSid" : "From"
        let form = [("To", message.to), (sender, endpoint.from), ("Body", text)]
            .map { "\(Self.formEncode($0.0))=\(Self.formEncode($0.1))" }
            .joined(separator: "&")
        var request = HTTPRequest(
            method: "POST",
            url: messagesURL,
            headers: [
                ("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Basic \(basicCredential)"),
                ("I-Twilio-Idempotency-Token", message.idempotencyKey),
            ],
            body: Data(form.utf8),
            connectTimeout: endpoint.connectTimeout,
            totalTimeout: endpoint.totalTimeout
        )
        request.repeatable = false
        return request
    }

    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        standardVerdict(
            response,
            accepted: { response in
                .accepted(
                    messageID: field("sid", of: response),
                    segments: field("num_segments", of: response).flatMap { Int($0) }
                )
            },
            refusal: { response in
                // 21211: invalid 'To' number; 21614: not a mobile number.
                let code = field("code", of: response).flatMap { Int($0) }
                return code == 21211 || code == 21614 ? .invalidMobileNumber : .gatewayRefused
            }
        )
    }

    /// The API base without a trailing slash.
    var apiBase: String {
        var base = endpoint.url
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }

    /// The account's Messages list: messages are created by `POST` to it and listed by `GET`.
    var messagesURL: String { "\(apiBase)/2010-04-01/Accounts/\(accountSID)/Messages.json" }

    var basicCredential: String { Data("\(accountSID):\(endpoint.credential)".utf8).base64EncodedString() }

    /// Whether `text` is an account SID as Twilio's API description defines it: `^AC[0-9a-fA-F]{32}$`.
    public static func isAccountSID(_ text: String) -> Bool { isSID(text, prefix: "AC") }

    /// Whether a sender is a Messaging Service (`^MG[0-9a-fA-F]{32}$`); anything else, an alphanumeric sender ID
    /// such as `MGMOutlet` included, goes as `From`.
    static func isMessagingServiceSID(_ text: String) -> Bool { isSID(text, prefix: "MG") }

    private static func isSID(_ text: String, prefix: String) -> Bool {
        text.utf8.count == 34 && text.hasPrefix(prefix)
            && text.utf8.dropFirst(2).allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                    UInt8(ascii: "A")...UInt8(ascii: "F"):
                    true
                default: false
                }
            }
    }

    /// `application/x-www-form-urlencoded` value: everything but unreserved characters (RFC 3986) percent-encoded.
    static func formEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var encoded: [UInt8] = []
        encoded.reserveCapacity(text.utf8.count * 3 / 2)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                encoded.append(byte)
            default:
                encoded.append(contentsOf: [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            }
        }
        return String(decoding: encoded, as: UTF8.self)
    }
}

extension JSONText {
    /// Bytes it will take, near enough to reserve a body's room.
    var byteCount: Int {
        switch self {
        case .plain(let text): return text.utf8.count
        case .escaped(let bytes): return bytes.count
        }
    }
}

extension JSONBytes {
    /// An email part as a JSON string.
    mutating func text(_ part: JSONText) {
        switch part {
        case .plain(let text): string(text)
        case .escaped(let bytes): escapedString(bytes)
        }
    }

    /// `,"headers":{...}` with a recipient's ``ListUnsubscribe`` headers, or nothing without a URL: the shape both
    /// SendGrid's personalizations and the webhook take.
    mutating func emailHeaders(unsubscribeURL: String?) {
        guard let unsubscribeURL else { return }
        raw(#","headers":{"#)
        for (number, header) in ListUnsubscribe.headers(unsubscribeURL).enumerated() {
            if number > 0 { raw(",") }
            string(header.name)
            raw(":")
            string(header.value)
        }
        raw("}")
    }

    /// A recipient's substitutions as an object, in key order so that equal batches have equal bodies.
    mutating func substitutions(_ values: [String: String]) {
        raw("{")
        for (number, (tag, value)) in values.sorted(by: { $0.key < $1.key }).enumerated() {
            if number > 0 { raw(",") }
            string(tag)
            raw(":")
            string(value)
        }
        raw("}")
    }
}

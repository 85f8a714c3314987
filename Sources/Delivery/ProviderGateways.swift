public import Curl
import Foundation

/// SendGrid's v3 Mail Send API (`POST /v3/mail/send`).
///
/// Related documentation: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
public struct SendGridGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public var name: String { "sendgrid" }

    /// - Parameter endpoint: `url` is the full mail-send URL, normally `https://api.sendgrid.com/v3/mail/send`;
    ///   `credential` is the API key.
    public init(endpoint: GatewayEndpoint) { self.endpoint = endpoint }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard case .email(let subject, let html, let text) = message.content else {
            preconditionFailure("SendGridGateway given a non-email message")
        }
        var body = JSONBytes(capacity: 320 + html.utf8.count + text.utf8.count)
        body.raw(#"{"personalizations":[{"to":[{"email":"#)
        body.string(message.to)
        body.raw(#"}]}],"from":{"email":"#)
        body.string(endpoint.from)
        body.raw(#"},"subject":"#)
        body.string(subject)
        // SendGrid requires text/plain before text/html.
        body.raw(#","content":[{"type":"text/plain","value":"#)
        body.string(text)
        body.raw(#"},{"type":"text/html","value":"#)
        body.string(html)
        body.raw(#"}],"custom_args":{"idempotency_key":"#)
        body.string(message.idempotencyKey)
        body.raw("}}")
        return endpoint.bearerJSONRequest(body, idempotencyKey: message.idempotencyKey)
    }

    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        standardVerdict(response) { .accepted(messageID: $0.headers["x-message-id"], segments: nil) }
    }
}

/// Twilio's Programmable Messaging API (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`).
///
/// Related documentation: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
public struct TwilioGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public let accountSID: String
    public var name: String { "twilio" }

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
        var base = endpoint.url
        while base.hasSuffix("/") { base.removeLast() }
        let sender = endpoint.from.hasPrefix("MG") ? "MessagingServiceSid" : "From"
        let form = [("To", message.to), (sender, endpoint.from), ("Body", text)]
            .map { "\(Self.formEncode($0.0))=\(Self.formEncode($0.1))" }
            .joined(separator: "&")
        let basic = Data("\(accountSID):\(endpoint.credential)".utf8).base64EncodedString()
        return HTTPRequest(
            method: "POST",
            url: "\(base)/2010-04-01/Accounts/\(accountSID)/Messages.json",
            headers: [
                ("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Basic \(basic)"),
                ("I-Twilio-Idempotency-Token", message.idempotencyKey),
            ],
            body: Data(form.utf8),
            connectTimeout: endpoint.connectTimeout,
            totalTimeout: endpoint.totalTimeout
        )
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

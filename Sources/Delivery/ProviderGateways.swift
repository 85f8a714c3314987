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
        let body: [String: Any] = [
            "personalizations": [["to": [["email": message.to]]]],
            "from": ["email": endpoint.from],
            "subject": subject,
            // SendGrid requires text/plain before text/html.
            "content": [["type": "text/plain", "value": text], ["type": "text/html", "value": html]],
            "custom_args": ["idempotency_key": message.idempotencyKey],
        ]
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
                let body = json(response)
                let segments = (body["num_segments"] as? String).flatMap(Int.init) ?? body["num_segments"] as? Int
                return .accepted(messageID: body["sid"] as? String, segments: segments)
            },
            refusal: { response in
                // 21211: invalid 'To' number; 21614: not a mobile number.
                let code = json(response)["code"] as? Int
                return code == 21211 || code == 21614 ? .invalidMobileNumber : .gatewayRefused
            }
        )
    }

    static func formEncode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

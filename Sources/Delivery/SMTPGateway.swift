public import Curl
import Foundation

/// Email through any SMTP server (a relay, Postfix, or a provider's SMTP endpoint), over libcurl's SMTP.
///
/// The URL is `smtps://host:465` (TLS from the start) or `smtp://host:587` (STARTTLS required unless the operator turns
/// it off for a relay on loopback). The credential is `user:password` for AUTH, or `none` for a server that takes mail
/// without it. libcurl keeps the connection open and sends the next message on it.
///
/// SMTP has no idempotency key: a message whose end-of-data reply was lost may have been delivered, so it is never
/// sent again blind (the `on_unknown` policy decides). Its Message-ID is derived from the message's key, the same for
/// every attempt, so a receiving system can tell repeats apart.
public struct SMTPGateway: Gateway {
    public let endpoint: GatewayEndpoint
    public let requireTLS: Bool
    public var name: String { "smtp" }
    public var isIdempotent: Bool { false }

    public init(endpoint: GatewayEndpoint, requireTLS: Bool) {
        self.endpoint = endpoint
        self.requireTLS = requireTLS
    }

    /// Whether `url` is an SMTP URL this gateway can use.
    public static func isSMTPURL(_ url: String) -> Bool {
        url.hasPrefix("smtp://") || url.hasPrefix("smtps://")
    }

    public func request(for message: OutgoingMessage) -> HTTPRequest {
        guard case .email(let subject, let html, let text) = message.content else {
            preconditionFailure("SMTPGateway given a non-email message")
        }
        var request = HTTPRequest(
            method: "POST",
            url: endpoint.url,
            body: Data(
                MIMEMessage.render(
                    from: endpoint.from,
                    to: message.to,
                    subject: subject,
                    html: html,
                    text: text,
                    key: message.idempotencyKey,
                    unsubscribeURL: message.unsubscribeURL
                ).utf8
            ),
            connectTimeout: endpoint.connectTimeout,
            totalTimeout: endpoint.totalTimeout
        )
        let login = endpoint.credential.split(separator: ":", maxSplits: 1).map(String.init)
        request.mail = MailEnvelope(
            from: endpoint.from,
            recipients: [message.to],
            username: login.count == 2 ? login[0] : nil,
            password: login.count == 2 ? login[1] : nil,
            requireTLS: requireTLS
        )
        request.repeatable = false
        return request
    }

    /// 2xx: taken. 4xx (421 closing, 450 mailbox busy, 451 local error, 452 no storage): try again. 5xx: refused.
    public func verdict(for response: HTTPResponse) -> GatewayVerdict {
        let detail = String(decoding: response.body.prefix(300), as: UTF8.self)
        switch response.status {
        case 200..<300: return .accepted(messageID: nil, segments: nil)
        case 400..<500: return .retry(after: nil, detail: "SMTP \(response.status) from \(name): \(detail)")
        default: return .refused(.gatewayRefused, detail: "SMTP \(response.status) from \(name): \(detail)")
        }
    }
}

/// An RFC 5322 message with a text and an HTML alternative, both UTF-8 in base64 (no line is too long, and no line
/// starts with a dot), and a subject in an RFC 2047 encoded word when it is not ASCII.
enum MIMEMessage {
    static func render(
        from: String,
        to: String,
        subject: String,
        html: String,
        text: String,
        key: String,
        unsubscribeURL: String? = nil
    ) -> String {
        let domain = from.split(separator: "@").last.map(String.init) ?? "coupond.invalid"
        // FNV-1a of the key: the same boundary for every attempt, and never a line of base64 (which has no "-").
        let hash = key.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
        let boundary = "coupond-" + String(hash, radix: 36)
        var lines = [
            "From: <\(from)>",
            "To: <\(to)>",
            "Subject: \(header(subject))",
            "Date: \(date(Date()))",
            "Message-ID: <\(key)@\(domain)>",
        ]
        // RFC 8058 asks that the DKIM signature cover both headers: the relay that signs sees them as any other.
        lines += unsubscribeURL.map { ListUnsubscribe.headers($0).map { "\($0.name): \($0.value)" } } ?? []
        lines += [
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative; boundary=\"\(boundary)\"",
            "",
        ]
        for (type, content) in [("text/plain", text), ("text/html", html)] {
            lines += [
                "--\(boundary)",
                "Content-Type: \(type); charset=utf-8",
                "Content-Transfer-Encoding: base64",
                "",
            ]
            lines.append(base64Body(content))
        }
        lines.append("--\(boundary)--")
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// The value as is when it is printable ASCII, else one or more `=?utf-8?B?...?=` words.
    static func header(_ value: String) -> String {
        let flat = value.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if flat.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return flat }
        // Encoded words of at most 45 bytes of UTF-8 each (60 base64 characters), split between characters.
        var words: [String] = []
        var chunk = ""
        for character in flat {
            if chunk.utf8.count + String(character).utf8.count > 45 {
                words.append(chunk)
                chunk = ""
            }
            chunk.append(character)
        }
        if !chunk.isEmpty { words.append(chunk) }
        return words.map { "=?utf-8?B?" + Data($0.utf8).base64EncodedString() + "?=" }.joined(separator: "\r\n ")
    }

    /// The content in base64, in lines of 76 characters ended by CRLF (RFC 2045).
    static func base64Body(_ content: String) -> String {
        Data(content.utf8).base64EncodedString(options: [
            .lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed,
        ])
    }

    static func date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }
}

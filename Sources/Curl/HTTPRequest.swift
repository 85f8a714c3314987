public import Foundation

/// An HTTP request to a gateway.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: Data?
    /// Seconds allowed to establish the connection (libcurl: `CURLOPT_CONNECTTIMEOUT_MS`).
    public var connectTimeout: Double
    /// Seconds allowed for the whole transfer (libcurl: `CURLOPT_TIMEOUT_MS`).
    public var totalTimeout: Double
    /// Whether the server drops a repeat of this request (it honours its idempotency key). Only then may libcurl send
    /// it again by itself when a reused connection closed before the answer; a request a repeat would duplicate is
    /// never sent twice by libcurl, and a failure says whether its body started (``CurlError/requestSent``).
    public var repeatable = true
    /// With an `smtp://` or `smtps://` URL: the envelope of a message submitted over SMTP. The body is then the whole
    /// RFC 5322 message, and the response's status is the server's last reply code (250 when it took the message).
    public var mail: MailEnvelope?

    public init(
        method: String = "GET",
        url: String,
        headers: [(name: String, value: String)] = [],
        body: Data? = nil,
        connectTimeout: Double = 5,
        totalTimeout: Double = 15
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
    }
}

extension HTTPRequest {
    /// What of the request would let a value end a protocol line early: a header with CR, LF or NUL (a second header,
    /// or the start of the body), or an envelope address with those, any other control, a space or an angle bracket
    /// (libcurl writes `MAIL FROM:<...>` and `RCPT TO:<...>` as given, so CR LF there is a new SMTP command). `nil`
    /// when there is none. Checked before every transfer, whatever built the request.
    var unsafePart: String? {
        for header in headers {
            if !Self.isLineSafe(header.name) || !Self.isLineSafe(header.value) {
                return "header \(header.name.prefix(40).filter { $0.isLetter || $0 == "-" })"
            }
        }
        if !Self.isLineSafe(url) { return "URL" }
        guard let mail else { return nil }
        if !Self.isMailboxSafe(mail.from) { return "envelope sender" }
        if mail.recipients.contains(where: { !Self.isMailboxSafe($0) }) { return "envelope recipient" }
        return nil
    }

    private static func isLineSafe(_ value: String) -> Bool {
        !value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
    }

    /// Printable ASCII without space, `<` or `>`: what can stand between the angle brackets of an SMTP path.
    private static func isMailboxSafe(_ address: String) -> Bool {
        !address.isEmpty && address.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != 0x3C && $0 != 0x3E }
    }
}

/// The SMTP envelope of a ``HTTPRequest`` to a mail server.
public struct MailEnvelope: Sendable {
    public var from: String
    public var recipients: [String]
    public var username: String?
    public var password: String?
    /// Whether an `smtp://` server must switch to TLS (STARTTLS) before anything else is sent; `smtps://` is TLS
    /// from the start.
    public var requireTLS: Bool

    public init(from: String, recipients: [String], username: String?, password: String?, requireTLS: Bool) {
        self.from = from
        self.recipients = recipients
        self.username = username
        self.password = password
        self.requireTLS = requireTLS
    }
}

/// An HTTP response: any status, including 4xx and 5xx.
public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names in lower case; the last value wins for repeated names.
    public var headers: [String: String]
    public var body: Data
    /// Seconds from the start of the transfer to its end (libcurl's total time), 0 when not measured.
    public var totalSeconds: Double

    public init(status: Int, headers: [String: String], body: Data, totalSeconds: Double = 0) {
        self.status = status
        self.headers = headers
        self.body = body
        self.totalSeconds = totalSeconds
    }
}

/// What a gateway is asked to deliver.
public enum MessageContent: Sendable, Equatable {
    case email(subject: String, html: String, text: String)
    /// An email whose HTML and text parts come already escaped for a JSON string, for gateways whose body is JSON
    /// (``Gateway/takesEscapedEmail``): most of an email is the same for every customer of a send, and is escaped
    /// once rather than per message.
    case escapedEmail(subject: String, html: [UInt8], text: [UInt8])
    case sms(text: String)
}

/// One part of an email as a JSON body writes it: plain text to escape, or text escaped already.
enum JSONText {
    case plain(String)
    case escaped([UInt8])
}

extension MessageContent {
    /// The subject, HTML and text of an email, in either form; `nil` for an SMS.
    var jsonEmailParts: (subject: String, html: JSONText, text: JSONText)? {
        switch self {
        case .email(let subject, let html, let text): return (subject, .plain(html), .plain(text))
        case .escapedEmail(let subject, let html, let text): return (subject, .escaped(html), .escaped(text))
        case .sms: return nil
        }
    }
}

/// One message to one recipient.
public struct OutgoingMessage: Sendable, Equatable {
    /// An email address or an E.164 mobile number.
    public var to: String
    public var content: MessageContent
    /// The same for every attempt of one message (send, customer, channel), so a gateway can drop a repeat.
    public var idempotencyKey: String
    /// An email's one-click unsubscribe URL, which goes out in its `List-Unsubscribe` headers (``ListUnsubscribe``).
    public var unsubscribeURL: String?

    public init(to: String, content: MessageContent, idempotencyKey: String, unsubscribeURL: String? = nil) {
        self.to = to
        self.content = content
        self.idempotencyKey = idempotencyKey
        self.unsubscribeURL = unsubscribeURL
    }
}

/// The headers of RFC 8058's one-click unsubscribe, which Gmail and Yahoo require of bulk senders: the inbox shows an
/// unsubscribe button, and pressing it POSTs `List-Unsubscribe=One-Click` to the URL.
public enum ListUnsubscribe {
    public static func headers(_ url: String) -> [(name: String, value: String)] {
        [("List-Unsubscribe", "<\(url)>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    }
}

/// Why a message was not delivered, in the words `send_recipients.*_error` stores.
public enum FailureReason: String, Sendable, Codable, CaseIterable {
    case noEmailAddress = "no_email_address"
    /// The address is not a plain mailbox a mail server takes (``RecipientAddress``): it was not sent.
    case invalidEmailAddress = "invalid_email_address"
    case noMobileNumber = "no_mobile_number"
    case invalidMobileNumber = "invalid_mobile_number"
    case noConsent = "no_consent"
    case gatewayRefused = "gateway_refused"
    case retriesExhausted = "retries_exhausted"
    /// The SMS is longer than the 1,600 characters providers take; it was not sent.
    case messageTooLong = "message_too_long"
    /// Sending the SMS would have taken the send's SMS cost over its `sms_budget`; it was not sent.
    case budgetExhausted = "budget_exhausted"
    /// The message may have gone out, nothing said whether it did, and the `on_unknown` policy is `skip`.
    case deliveryUnconfirmed = "delivery_unconfirmed"
    case systemError = "system_error"
}

/// How a message whose fate was unknown was settled (`send_recipients.*_resolution`).
public enum UnknownSettlement: String, Sendable, Equatable {
    /// The provider's own records show it.
    case foundAtProvider = "found_at_provider"
    /// The provider's records do not show it, so it was sent again.
    case notFoundResent = "not_found_resent"
    /// The provider cannot be asked and the policy is `resend`.
    case resentByPolicy = "resent_by_policy"
    /// The provider cannot be asked and the policy is `skip`.
    case skippedByPolicy = "skipped_by_policy"
}

/// What to do with a message that may have gone out, when its provider neither drops repeats nor can be asked.
public enum UnknownPolicy: String, Sendable, Equatable, CaseIterable {
    /// Send it again: the customer may get it twice.
    case resend
    /// Send nothing more: it fails as `delivery_unconfirmed`, and the customer may have got nothing.
    case skip
}

/// The end of one message's delivery.
public enum DeliveryOutcome: Sendable, Equatable {
    /// The gateway accepted the message (or its records showed it had, `settled` says so).
    case sent(messageID: String?, segments: Int?, attempts: Int, settled: UnknownSettlement? = nil)
    /// The gateway refused it, or every attempt failed.
    case failed(FailureReason, detail: String, attempts: Int, settled: UnknownSettlement? = nil)
    /// A request may have reached a gateway that does not drop repeats, and no answer says whether it did: the
    /// message is reconciled or settled by policy later, never sent again blind.
    case unknown(detail: String, attempts: Int)

    public var attempts: Int {
        switch self {
        case .sent(_, _, let attempts, _), .failed(_, _, let attempts, _), .unknown(_, let attempts): return attempts
        }
    }
}

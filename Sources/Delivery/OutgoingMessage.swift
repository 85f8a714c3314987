/// What a gateway is asked to deliver.
public enum MessageContent: Sendable, Equatable {
    case email(subject: String, html: String, text: String)
    case sms(text: String)
}

/// One message to one recipient.
public struct OutgoingMessage: Sendable, Equatable {
    /// An email address or an E.164 mobile number.
    public var to: String
    public var content: MessageContent
    /// The same for every attempt of one message (send, customer, channel), so a gateway can drop a repeat.
    public var idempotencyKey: String

    public init(to: String, content: MessageContent, idempotencyKey: String) {
        self.to = to
        self.content = content
        self.idempotencyKey = idempotencyKey
    }
}

/// Why a message was not delivered, in the words `send_recipients.*_error` stores.
public enum FailureReason: String, Sendable, Codable, CaseIterable {
    case noEmailAddress = "no_email_address"
    case noMobileNumber = "no_mobile_number"
    case invalidMobileNumber = "invalid_mobile_number"
    case noConsent = "no_consent"
    case gatewayRefused = "gateway_refused"
    case retriesExhausted = "retries_exhausted"
    case systemError = "system_error"
}

/// The end of one message's delivery.
public enum DeliveryOutcome: Sendable, Equatable {
    /// The gateway accepted the message.
    case sent(messageID: String?, segments: Int?, attempts: Int)
    /// The gateway refused it, or every attempt failed.
    case failed(FailureReason, detail: String, attempts: Int)

    public var attempts: Int {
        switch self {
        case .sent(_, _, let attempts), .failed(_, _, let attempts): return attempts
        }
    }
}

public import Postgres

/// A send's status, in the words `coupond.sends.status` holds (rule 10).
public enum SendStatus: String, Sendable, Codable, CaseIterable, PostgresEncodable, PostgresDecodable {
    case notStarted = "not_started"
    case sending
    case done
    case failed
    case cancelled

    /// Done or failed: the send has ended, and its merchant notice and failure report apply.
    public var hasEnded: Bool { self == .done || self == .failed }
}

/// One channel of one recipient, in the words `send_recipients.email_status` and `sms_status` hold.
public enum ChannelStatus: String, Sendable, Codable, CaseIterable, PostgresEncodable, PostgresDecodable {
    case pending
    /// The message may have reached a provider that does not drop repeats, and nothing said whether it did: it is
    /// reconciled, or settled by the `on_unknown` policy, before anything is sent again.
    case unknown
    case sent
    case failed
}

/// Whether the merchant's notice went out, in the words `sends.notice_status` holds.
public enum NoticeStatus: String, Sendable, Codable, CaseIterable, PostgresEncodable, PostgresDecodable {
    case pending
    case sent
    case failed
}

/// How a channel's unknown outcome was settled, in the words `send_recipients.*_resolution` holds.
public enum UnknownResolution: String, Sendable, Codable, CaseIterable, PostgresEncodable, PostgresDecodable {
    /// The provider's own records show the message: it counts as sent, and is not sent again.
    case foundAtProvider = "found_at_provider"
    /// The provider's records do not show it: it was sent again.
    case notFoundResent = "not_found_resent"
    /// The provider cannot be asked and the policy is `resend`: it was sent again, perhaps a second time.
    case resentByPolicy = "resent_by_policy"
    /// The provider cannot be asked and the policy is `skip`: it failed as `delivery_unconfirmed`.
    case skippedByPolicy = "skipped_by_policy"
}

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
    case sent
    case failed
}

/// Whether the merchant's notice went out, in the words `sends.notice_status` holds.
public enum NoticeStatus: String, Sendable, Codable, CaseIterable, PostgresEncodable, PostgresDecodable {
    case pending
    case sent
    case failed
}

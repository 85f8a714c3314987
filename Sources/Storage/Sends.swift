public import Foundation
public import Postgres

/// When a send should go out, as the merchant gave it.
public enum ScheduledTime: Sendable, Equatable {
    /// An instant, for example `2026-11-25T18:00:00Z` or `2026-11-25T18:00+05:30`.
    case instant(Date)
    /// A wall-clock time in the shop's own time zone, as `YYYY-MM-DD HH:MM[:SS]`; the database converts it.
    case shopLocal(String)
}

/// What a merchant asks for: one coupon to one group over some channels at one hour.
public struct SendRequest: Sendable, Equatable {
    public var shopID: Int64
    public var groupID: Int64
    public var couponID: Int64
    public var email: Bool
    public var sms: Bool
    public var time: ScheduledTime
    /// Most the send's SMS may cost, in the shop's currency (`sends.sms_budget`).
    public var smsBudget: Decimal?
    /// The SMS with markers, as `sends.sms_shape` takes it (``Messages/SMSShape``'s JSON).
    public var smsShape: String?

    public init(
        shopID: Int64,
        groupID: Int64,
        couponID: Int64,
        email: Bool,
        sms: Bool,
        time: ScheduledTime,
        smsBudget: Decimal? = nil,
        smsShape: String? = nil
    ) {
        self.shopID = shopID
        self.groupID = groupID
        self.couponID = couponID
        self.email = email
        self.sms = sms
        self.time = time
        self.smsBudget = smsBudget
        self.smsShape = smsShape
    }
}

/// A send as the group activity list shows it (`coupond.group_activity`).
public struct SendSummary: Sendable, Codable, Equatable {
    public var sendID: Int64
    public var shopID: Int64
    public var groupID: Int64
    public var groupName: String?
    public var couponID: Int64
    public var couponTitle: String?
    public var email: Bool
    public var sms: Bool
    public var scheduledAt: Date
    public var timeZone: String
    public var status: SendStatus
    public var statusLabel: String
    public var failureReason: String?
    public var failureReasonText: String?
    public var recipientCount: Int?
    public var sentCount: Int
    public var failedCount: Int
    public var progressPercent: Double?
    public var smsSegments: Int64
    public var smsCost: Decimal
    public var currency: String
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// Messages that may have gone out and are not yet settled (reconciled, or decided by the `on_unknown` policy).
    public var unknownCount: Int
    /// Messages whose unknown outcome was settled.
    public var reconciledCount: Int
    /// How each channel the send uses did, from reached to claimed; `nil` for a channel the send does not use.
    public var emailFunnel: ChannelFunnel?
    public var smsFunnel: ChannelFunnel?
    /// Customers of the send who claimed the coupon through its link.
    public var claimedCount: Int
    /// The earlier send whose failed customers this send retries, and the failure reasons it retries (`nil`: all).
    public var retryOf: Int64?
    public var retryReasons: [String]?
    /// The coupon watch's last warning to the merchant (the problem that would fail the send at its hour, and what to
    /// do), when it was emailed, and the last moment the send can be cancelled.
    public var warning: String?
    public var warningHint: String?
    public var warnedAt: Date?
    public var cancelUntil: Date
    /// Most the send's SMS may cost (`sms_budget`); `nil` for no limit.
    public var smsBudget: Decimal?

    init(row: PostgresRow) throws {
        sendID = try row.decode("send_id")
        shopID = try row.decode("shop_id")
        groupID = try row.decode("group_id")
        groupName = try row.decode("group_name", as: String?.self)
        couponID = try row.decode("coupon_id")
        couponTitle = try row.decode("coupon_title", as: String?.self)
        email = try row.decode("send_email")
        sms = try row.decode("send_sms")
        scheduledAt = try row.decode("scheduled_at")
        timeZone = try row.decode("time_zone")
        status = try row.decode("status")
        statusLabel = try row.decode("status_label")
        failureReason = try row.decode("failure_reason", as: String?.self)
        failureReasonText = try row.decode("failure_reason_text", as: String?.self)
        recipientCount = try row.decode("recipient_count", as: Int?.self)
        sentCount = try row.decode("sent_count")
        failedCount = try row.decode("failed_count")
        progressPercent = try row.decode("progress_percent", as: Double?.self)
        smsSegments = try row.decode("sms_segments")
        smsCost = try row.decode("sms_cost")
        currency = try row.decode("currency")
        createdAt = try row.decode("created_at")
        startedAt = try row.decode("started_at", as: Date?.self)
        finishedAt = try row.decode("finished_at", as: Date?.self)
        unknownCount = try row.decode("unknown_count")
        reconciledCount = try row.decode("reconciled_count")
        emailFunnel = try ChannelFunnel(row: row, channel: "email")
        smsFunnel = try ChannelFunnel(row: row, channel: "sms")
        claimedCount = try row.decode("claimed_count")
        retryOf = try row.decode("retry_of", as: Int64?.self)
        warning = try row.decode("warning", as: String?.self)
        warningHint = try row.decode("warning_hint", as: String?.self)
        warnedAt = try row.decode("warned_at", as: Date?.self)
        cancelUntil = try row.decode("cancel_until")
        smsBudget = try row.decode("sms_budget", as: Decimal?.self)
        // A text[] of reason names, which hold neither commas nor quotes: `{retries_exhausted,no_consent}`.
        retryReasons = try row.decode("retry_reasons", as: String?.self).map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").map(String.init)
        }
    }
}

/// One channel of a send, customer by customer: reached or not, then followed the channel's link, then claimed.
///
/// A customer counts once per channel. `clicked` counts first clicks of the channel's short link, so it stays 0 on
/// a channel that carries the full claim link; `claimed` counts the customers the channel reached who claimed.
public struct ChannelFunnel: Sendable, Codable, Equatable {
    public var sent: Int
    public var failed: Int
    public var clicked: Int
    public var claimed: Int

    public init(sent: Int, failed: Int, clicked: Int, claimed: Int) {
        self.sent = sent
        self.failed = failed
        self.clicked = clicked
        self.claimed = claimed
    }

    /// The channel's columns of a `group_activity` row, or `nil` when the send does not use it.
    init?(row: PostgresRow, channel: String) throws {
        guard let sent = try row.decode("\(channel)_sent_count", as: Int?.self) else { return nil }
        self.sent = sent
        failed = try row.decode("\(channel)_failed_count")
        clicked = try row.decode("\(channel)_clicked_count")
        claimed = try row.decode("\(channel)_claimed_count")
    }
}

/// A rule of the send table that refused a request, as the database reported it.
public struct SendRefusal: Error, Sendable, CustomStringConvertible {
    /// The rule's name, for example `sends_scheduled_2h_ahead` (the error's constraint field).
    public var rule: String
    public var message: String
    public var hint: String?
    /// The SQLSTATE: `P0002` when the send does not exist, class `23` for a refused insert.
    public var sqlState: SQLState?

    public var description: String {
        hint.map { "\(message) [\(rule)]\nhint: \($0)" } ?? "\(message) [\(rule)]"
    }

    /// Recognises a refusal by the rules of `sql/`, which all name a constraint; other errors stay as they are.
    public init?(_ error: PostgresError) {
        guard error.code == .queryFailed, let constraint = error.constraint else { return nil }
        rule = constraint
        message = error.message
        hint = error.hint
        sqlState = error.sqlState
    }
}

/// Schedules, cancels and reads sends.
public struct SendStore {
    public let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Inserts a send; the database checks every scheduling and eligibility rule.
    ///
    /// - Returns: the new send.
    /// - Throws: ``SendRefusal`` naming the rule that refused it, or ``PostgresError``.
    public func schedule(_ request: SendRequest) throws -> SendSummary {
        let scheduledAt: PostgresQuery
        switch request.time {
        case .instant(let date):
            scheduledAt = "\(date)::timestamptz"
        case .shopLocal(let text):
            // coupond.shop_hour refuses an hour the shop's clocks skip or pass twice instead of moving it.
            scheduledAt = "coupond.shop_hour(\(request.shopID), \(text)::timestamp)"
        }
        let insert: PostgresQuery = """
            INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at, sms_budget,
                                       sms_shape)
            VALUES (\(request.shopID), \(request.groupID), \(request.couponID), \(request.email), \(request.sms), \
            \(subquery: scheduledAt), \(request.smsBudget.map { "\($0)" })::numeric, \(request.smsShape)::jsonb)
            RETURNING id
            """
        let id: Int64
        do {
            guard let row = try connection.queryRow(insert) else { throw StorageError("INSERT returned no row") }
            id = try row.decode("id")
        } catch let error as PostgresError {
            throw SendRefusal(error) ?? error
        }
        guard let send = try send(id: id) else { throw StorageError("send \(id) vanished after it was scheduled") }
        return send
    }

    /// Schedules a send of `sendID`'s coupon to the customers it failed (through `coupond.retry_failed`): on
    /// `channels` (`nil`: every channel that failed someone) and for `reasons` (`nil`: every reason).
    ///
    /// - Throws: ``SendRefusal`` naming the rule: `retry_of_exists`, `retry_of_done`, `retry_channels_used`,
    ///   `retry_has_failures`, and the rules of any send (`sends_scheduled_on_the_hour`, `sends_scheduled_2h_ahead`, ...).
    public func retry(sendID: Int64, time: ScheduledTime, channels: [String]?, reasons: [String]?) throws
        -> SendSummary
    {
        let scheduledAt: PostgresQuery
        switch time {
        case .instant(let date):
            scheduledAt = "\(date)::timestamptz"
        case .shopLocal(let text):
            scheduledAt =
                "coupond.shop_hour((SELECT shop_id FROM coupond.sends WHERE id = \(sendID)), \(text)::timestamp)"
        }
        let call: PostgresQuery = """
            SELECT coupond.retry_failed(\(sendID), \(subquery: scheduledAt), \(channels)::text[], \(reasons)::text[])
                AS id
            """
        let id: Int64
        do {
            guard let row = try connection.queryRow(call) else { throw StorageError("retry_failed returned no row") }
            id = try row.decode("id")
        } catch let error as PostgresError {
            throw SendRefusal(error) ?? error
        }
        guard let send = try send(id: id) else { throw StorageError("send \(id) vanished after it was scheduled") }
        return send
    }

    /// Cancels a not started send (rule 11) through `coupond.cancel_send`.
    ///
    /// - Throws: ``SendRefusal`` (`cancel_send_exists`, `cancel_only_not_started`, `cancel_until_2h_before`).
    public func cancel(sendID: Int64) throws -> SendSummary {
        do {
            try connection.execute("SELECT coupond.cancel_send(\(sendID))")
        } catch let error as PostgresError {
            throw SendRefusal(error) ?? error
        }
        guard let send = try send(id: sendID) else { throw StorageError("send \(sendID) vanished after cancel") }
        return send
    }

    /// One send, or `nil` when there is none with this id.
    public func send(id: Int64) throws -> SendSummary? {
        try connection.queryRow("SELECT * FROM coupond.group_activity WHERE send_id = \(id)").map(SendSummary.init)
    }

    /// A group's activity list: every send to it, latest scheduled first.
    public func activity(groupID: Int64) throws -> [SendSummary] {
        try connection.query(
            "SELECT * FROM coupond.group_activity WHERE group_id = \(groupID) ORDER BY scheduled_at DESC, send_id DESC"
        ).map(SendSummary.init)
    }
}

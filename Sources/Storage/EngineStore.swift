public import Foundation
public import Postgres

/// A send as the engine works on it.
public struct ClaimedSend: Sendable {
    public var id: Int64
    public var shopID: Int64
    public var groupID: Int64
    public var couponID: Int64
    public var email: Bool
    public var sms: Bool
    public var status: SendStatus
    public var scheduledAt: Date
    public var recipientCount: Int?
    public var noticeStatus: NoticeStatus?
    /// Times the send has been taken up, this one included.
    public var attempts: Int = 1
    /// `sends.lease_owner` while this claim holds the lease: `<instance>#<attempts>`.
    public var leaseHolder: String = ""
    /// The earlier send whose failed customers this one retries (`sends.retry_of`), or `nil`.
    public var retryOf: Int64?
}

/// How the start of a send went (rule 4).
public enum StartOutcome: Sendable, Equatable {
    /// The send is going out to the group's `recipients` members.
    case sending(recipients: Int)
    /// The whole send failed with this reason (`invalid_coupon`, `coupon_inapplicable`, `insufficient_coupons`).
    case failed(reason: String)
}

/// The outcome of one recipient's channels in one batch; `nil` status leaves the channel as it is.
public struct RecipientOutcome: Sendable {
    public var customerID: Int64
    public var emailStatus: ChannelStatus?
    public var emailError: String?
    public var emailMessageID: String?
    public var emailAttempts: Int
    public var smsStatus: ChannelStatus?
    public var smsError: String?
    public var smsMessageID: String?
    public var smsAttempts: Int
    public var smsSegments: Int?
    public var smsCost: Decimal?
    /// How an unknown outcome of the channel was settled in this batch, when it was.
    public var emailResolution: UnknownResolution?
    public var smsResolution: UnknownResolution?
    /// Whether the channel was unknown when the batch was read: settling it takes it off the send's unknown count.
    public var emailWasUnknown = false
    public var smsWasUnknown = false
    /// SHA-256 of the customer's claim token in hex, stored with the outcome so that the link works from then on.
    public var tokenHashHex: String?

    public init(customerID: Int64) {
        self.customerID = customerID
        emailAttempts = 0
        smsAttempts = 0
    }
}

/// What the shop, coupon and group look like, for rendering messages and the notice.
public struct SendContext: Sendable {
    public var shopName: String
    public var loginURL: String
    public var merchantEmail: String
    public var timeZone: String
    public var currency: String
    public var groupName: String
    public var couponTitle: String
    public var couponDescription: String
    public var couponEndsAt: Date?
    /// This installation's id (`coupond.installation`), part of every idempotency key.
    public var installation: String
    /// The shop's locale: the language of a customer's messages when theirs has no templates.
    public var shopLocale: String? = nil
    /// The shop's postal address, in every email's footer.
    public var shopPostalAddress: String? = nil
    /// Most the send's SMS may cost (`sends.sms_budget`), and the price per segment it was estimated at.
    public var smsBudget: Decimal? = nil
    public var smsBudgetPrice: Decimal? = nil
}

/// The lease on a send was taken by another instance: stop working on it.
public struct LeaseLost: Error, CustomStringConvertible {
    public var sendID: Int64
    public var description: String { "lease on send \(sendID) was lost to another instance" }
}

/// The engine's SQL for a send as a whole: claiming it under a lease, starting it, recording outcomes and ending it
/// (``RecipientStore`` writes and pages its recipient list).
///
/// Every write after the claim is fenced by `lease_owner`, which a claim sets to `<instance>#<attempt>`: a number
/// that grows with every claim, so a worker that lost its lease (it stalled, another took over) can no longer change
/// the send, even when the instance that took over has the same name (a fixed `engine.instance_name`, or a restart).
/// Claim with the instance's name, then write through ``holding(_:)``.
public struct EngineStore {
    public let connection: PostgresConnection
    /// The instance's name (for claiming), or the lease holder of one claim (`host:pid#3`) for writes after it.
    public let owner: String
    public let leaseSeconds: Double

    /// Namespace of the per-group advisory locks ("CPGR"), held only for the length of a claim's transaction.
    static let groupLockNamespace: Int32 = 0x4350_4752

    public init(connection: PostgresConnection, owner: String, leaseSeconds: Double) {
        self.connection = connection
        self.owner = owner
        self.leaseSeconds = leaseSeconds
    }

    private var lease: String { "\(leaseSeconds) seconds" }

    // MARK: - Finding work

    /// Sends this instance could take now, oldest first: due sends whose group is free (no send of the group is
    /// sending and none older waits), sends left by a holder whose lease ran out, and notices waiting to go.
    ///
    /// A send waiting for its group, or held by a live lease, is not returned, so any number of them cannot keep a
    /// due send of a free group from being picked up. Every row is read along `sends_due` and the group indexes.
    public func dueSendIDs(limit: Int) throws -> [Int64] {
        try connection.query(Self.dueQuery(limit: limit)).map { try $0.decode("id") }
    }

    /// The statement of ``dueSendIDs(limit:)``, for reading its plan.
    public static func dueQuery(limit: Int) -> PostgresQuery {
        """
        SELECT s.id FROM coupond.sends s
        WHERE s.scheduled_at <= coupond.clock_now()
          AND (s.status IN ('not_started', 'sending') OR s.notice_status = 'pending')
          AND (s.lease_expires_at IS NULL OR s.lease_expires_at < now())
          AND (s.status <> 'not_started'
               OR (NOT EXISTS (SELECT 1 FROM coupond.sends o WHERE o.group_id = s.group_id AND o.status = 'sending')
                   AND NOT EXISTS (
                       SELECT 1 FROM coupond.sends o
                       WHERE o.group_id = s.group_id AND o.status = 'not_started'
                         AND (o.scheduled_at, o.id) < (s.scheduled_at, s.id))))
        ORDER BY s.scheduled_at, s.id
        LIMIT \(limit)
        """
    }

    /// Seconds until something may become startable without a notification: the next send falls due, or the next
    /// lease of a due send runs out (its holder may have stopped). `nil` when neither is ahead.
    public func secondsUntilNextChange() throws -> Double? {
        try connection.queryRow(Self.nextChangeQuery)?.decode("seconds", as: Double?.self)
    }

    /// The statement of ``secondsUntilNextChange()``, for reading its plan.
    public static let nextChangeQuery: PostgresQuery = """
        SELECT extract(epoch FROM least(
            (SELECT min(scheduled_at) FROM coupond.sends
             WHERE status = 'not_started' AND scheduled_at > coupond.clock_now()) - coupond.clock_now(),
            (SELECT min(lease_expires_at) FROM coupond.sends
             WHERE scheduled_at <= coupond.clock_now()
               AND (status IN ('not_started', 'sending') OR notice_status = 'pending')
               AND lease_expires_at >= now()) - now()
        ))::float8 AS seconds
        """

    /// How `coupond.clock_override` moves the rules' clock (tests and demos only), or `nil` when it does not.
    public func clockOverride() throws -> String? {
        try connection.queryRow(
            """
            SELECT CASE WHEN fixed_at IS NOT NULL THEN 'fixed at ' || to_char(fixed_at, 'YYYY-MM-DD HH24:MI:SS TZH')
                        ELSE 'shifted by ' || shift::text END AS override
            FROM coupond.clock_override
            """
        )?.decode("override")
    }

    // MARK: - Claiming

    static func groupKey(_ groupID: Int64) -> Int32 { Int32(truncatingIfNeeded: groupID % Int64(Int32.max)) }

    /// Takes the lease on a send if it still needs work and its group is free: no other send of the group is sending,
    /// and none older is due.
    ///
    /// Group exclusivity (rule 12) lives in the sends' rows, under their leases: a send of the group that is
    /// `sending` keeps the group, whoever holds it, and when its holder stops renewing, any instance takes that send
    /// over after `lease_seconds`, even while the old holder's session lives on (frozen, or stuck behind a dead
    /// connection). Nothing is held by the session: the group's advisory lock only serialises concurrent claims and
    /// ends with the transaction, so this works behind a transaction-pooling proxy.
    ///
    /// - Returns: the send, or `nil` when it is not this instance's to take.
    public func claim(sendID: Int64) throws -> ClaimedSend? {
        try connection.transaction {
            guard
                let groupID: Int64 = try connection.queryRow(
                    "SELECT group_id FROM coupond.sends WHERE id = \(sendID)"
                )?.decode("group_id")
            else { return nil }
            try connection.execute(
                "SELECT pg_advisory_xact_lock(\(Self.groupLockNamespace), \(Self.groupKey(groupID)))"
            )
            guard
                let row = try connection.queryRow(
                    """
                    SELECT s.*, coupond.clock_now() AS clock,
                           (s.lease_expires_at IS NULL OR s.lease_expires_at < now()) AS lease_free,
                           EXISTS (
                               SELECT 1 FROM coupond.sends o
                               WHERE o.group_id = s.group_id AND o.id <> s.id
                                 AND (o.status = 'sending'
                                      OR (o.status = 'not_started' AND o.scheduled_at <= coupond.clock_now()
                                          AND (o.scheduled_at, o.id) < (s.scheduled_at, s.id)))
                           ) AS group_busy
                    FROM coupond.sends s WHERE s.id = \(sendID)
                    FOR UPDATE OF s SKIP LOCKED
                    """
                )
            else { return nil }
            let status: SendStatus = try row.decode("status")
            let leaseFree: Bool = try row.decode("lease_free")
            let noticePending = try row.decode("notice_status", as: NoticeStatus?.self) == .pending
            let due = try row.decode("scheduled_at", as: Date.self) <= row.decode("clock", as: Date.self)
            let groupBusy: Bool = try row.decode("group_busy")
            let claimable: Bool
            switch status {
            case .notStarted: claimable = due && leaseFree && !groupBusy
            case .sending: claimable = leaseFree
            case .done, .failed: claimable = noticePending && leaseFree
            case .cancelled: claimable = false
            }
            guard claimable else { return nil }
            try connection.execute(
                """
                UPDATE coupond.sends
                SET lease_owner = \(owner) || '#' || (attempts + 1),
                    lease_expires_at = now() + \(lease)::interval, heartbeat_at = now(), attempts = attempts + 1
                WHERE id = \(sendID)
                """
            )
            return ClaimedSend(
                id: sendID,
                shopID: try row.decode("shop_id"),
                groupID: try row.decode("group_id"),
                couponID: try row.decode("coupon_id"),
                email: try row.decode("send_email"),
                sms: try row.decode("send_sms"),
                status: status,
                scheduledAt: try row.decode("scheduled_at"),
                recipientCount: try row.decode("recipient_count", as: Int?.self),
                noticeStatus: try row.decode("notice_status", as: NoticeStatus?.self),
                attempts: try row.decode("attempts", as: Int.self) + 1,
                leaseHolder: "\(owner)#\(try row.decode("attempts", as: Int.self) + 1)",
                retryOf: try row.decode("retry_of", as: Int64?.self)
            )
        }
    }

    /// The store that writes under the lease `send` was claimed with.
    public func holding(_ send: ClaimedSend) -> EngineStore {
        EngineStore(connection: connection, owner: send.leaseHolder, leaseSeconds: leaseSeconds)
    }

    /// Extends the lease. - Throws: ``LeaseLost`` when another instance holds it now.
    public func renewLease(sendID: Int64) throws {
        let updated = try connection.execute(
            """
            UPDATE coupond.sends SET lease_expires_at = now() + \(lease)::interval, heartbeat_at = now()
            WHERE id = \(sendID) AND lease_owner = \(owner)
            """
        )
        if updated == 0 { throw LeaseLost(sendID: sendID) }
    }

    /// Gives the send back so that any instance can continue it at once (shutdown, or work finished).
    ///
    /// Every batch the holder handed to the gateways is recorded by then (a message that may have gone out as
    /// unknown, one that never started as pending), so nothing is left in flight: `dispatched_through` is cleared,
    /// and the next holder does not take the pending ones for unknown.
    public func releaseLease(sendID: Int64) throws {
        try connection.execute(
            """
            UPDATE coupond.sends SET lease_owner = NULL, lease_expires_at = NULL, dispatched_through = NULL
            WHERE id = \(sendID) AND lease_owner = \(owner)
            """
        )
    }

    // MARK: - Starting (rule 4)

    /// Checks the coupon again through `coupond.start_send` (rule 4, defined once in SQL) and, if it still fits,
    /// moves the send to `sending` with its member count as the number of recipients. The recipients themselves are
    /// written part by part as the send goes (``RecipientStore/writeRecipients(of:after:limit:)``), so the first
    /// messages leave at once.
    ///
    /// - Throws: ``LeaseLost`` when the send is no longer this holder's.
    public func start(_ send: ClaimedSend) throws -> StartOutcome {
        guard
            let row = try connection.queryRow(
                "SELECT * FROM coupond.start_send(\(send.id), \(owner), \(lease)::interval)"
            )
        else { throw LeaseLost(sendID: send.id) }
        let status: SendStatus = try row.decode("status")
        switch status {
        case .sending:
            return .sending(recipients: try row.decode("recipients", as: Int?.self) ?? 0)
        case .failed:
            return .failed(reason: try row.decode("failure_reason", as: String?.self) ?? "system_error")
        default:
            throw StorageError("send \(send.id) is \(status.rawValue) and cannot start")
        }
    }

    /// Marks a send failed with `system_error` (rule 4), when something other than the coupon stopped it.
    public func failWithSystemError(sendID: Int64) throws {
        try connection.execute(
            """
            UPDATE coupond.sends
            SET status = 'failed', failure_reason = 'system_error', notice_status = 'pending', recipients_after = NULL
            WHERE id = \(sendID) AND lease_owner = \(owner) AND status IN ('not_started', 'sending')
            """
        )
    }

    // MARK: - Delivering

    /// The shop, group and coupon of a send.
    public func context(of send: ClaimedSend) throws -> SendContext {
        guard
            let row = try connection.queryRow(
                """
                SELECT sh.name AS shop_name, sh.login_url, sh.merchant_email, sh.time_zone, sh.currency, sh.locale,
                       sh.postal_address, s.sms_budget,
                       (s.sms_shape ->> 'price_per_segment')::numeric AS shape_price,
                       g.name AS group_name, c.title, c.description, c.ends_at,
                       (SELECT id FROM coupond.installation) AS installation
                FROM coupond.sends s
                JOIN coupond.shops sh ON sh.id = s.shop_id
                JOIN coupond.customer_groups g ON g.id = s.group_id
                JOIN coupond.coupons c ON c.id = s.coupon_id
                WHERE s.id = \(send.id)
                """
            )
        else { throw StorageError("shop, group or coupon of send \(send.id) is missing") }
        return SendContext(
            shopName: try row.decode("shop_name"),
            loginURL: try row.decode("login_url"),
            merchantEmail: try row.decode("merchant_email"),
            timeZone: try row.decode("time_zone"),
            currency: try row.decode("currency"),
            groupName: try row.decode("group_name"),
            couponTitle: try row.decode("title"),
            couponDescription: try row.decode("description"),
            couponEndsAt: try row.decode("ends_at", as: Date?.self),
            installation: try row.decode("installation"),
            shopLocale: try row.decode("locale", as: String?.self),
            shopPostalAddress: try row.decode("postal_address", as: String?.self),
            smsBudget: try row.decode("sms_budget", as: Decimal?.self),
            smsBudgetPrice: try row.decode("shape_price", as: Decimal?.self)
        )
    }

    /// Segments of the send's SMS that went out (the recipients recorded as sent): what a resumed send has already
    /// spent of its budget.
    public func sentSMSSegments(sendID: Int64) throws -> Int {
        try connection.queryRow(
            """
            SELECT coalesce(sum(coalesce(sms_segments, 1)), 0)::bigint AS segments FROM coupond.send_recipients
            WHERE send_id = \(sendID) AND sms_status = 'sent'
            """
        )?.decode("segments", as: Int.self) ?? 0
    }

    /// Records a batch's outcomes and adds the finished customers to the send's counts, in one transaction that
    /// also renews the lease.
    ///
    /// - Returns: customers now sent and failed.
    /// - Throws: ``LeaseLost`` (nothing is written then).
    @discardableResult
    public func record(sendID: Int64, outcomes: [RecipientOutcome]) throws -> (sent: Int, failed: Int) {
        guard let first = outcomes.first?.customerID else { return (0, 0) }
        // A batch is a run of customers in order: bounding the rows by its first and last id keeps the update to
        // them whatever the planner believes of a list it has never seen analysed (it is written as the send goes,
        // and a plan for a few hundred rows scanned the whole send when it had grown to a million).
        let (lowest, highest) = outcomes.reduce((first, first)) { (min($0.0, $1.customerID), max($0.1, $1.customerID)) }
        return try connection.transaction {
            let finals = try connection.query(
                """
                UPDATE coupond.send_recipients r SET
                    email_status = coalesce(v.email_status, r.email_status),
                    email_error = coalesce(v.email_error, r.email_error),
                    email_message_id = coalesce(v.email_message_id, r.email_message_id),
                    email_attempts = r.email_attempts + v.email_attempts,
                    sms_status = coalesce(v.sms_status, r.sms_status),
                    sms_error = coalesce(v.sms_error, r.sms_error),
                    sms_message_id = coalesce(v.sms_message_id, r.sms_message_id),
                    sms_attempts = r.sms_attempts + v.sms_attempts,
                    sms_segments = coalesce(v.sms_segments, r.sms_segments),
                    sms_cost = coalesce(v.sms_cost, r.sms_cost),
                    email_resolution = coalesce(v.email_resolution, r.email_resolution),
                    sms_resolution = coalesce(v.sms_resolution, r.sms_resolution),
                    token_hash = coalesce(decode(v.token_hash, 'hex'), r.token_hash)
                FROM unnest(
                    \(outcomes.map(\.customerID))::bigint[],
                    \(outcomes.map(\.emailStatus))::text[], \(outcomes.map(\.emailError))::text[],
                    \(outcomes.map(\.emailMessageID))::text[], \(outcomes.map(\.emailAttempts))::int[],
                    \(outcomes.map(\.smsStatus))::text[], \(outcomes.map(\.smsError))::text[],
                    \(outcomes.map(\.smsMessageID))::text[], \(outcomes.map(\.smsAttempts))::int[],
                    \(outcomes.map(\.smsSegments))::int[], \(outcomes.map(\.smsCost))::numeric[],
                    \(outcomes.map(\.tokenHashHex))::text[],
                    \(outcomes.map(\.emailResolution))::text[], \(outcomes.map(\.smsResolution))::text[]
                ) AS v(customer_id, email_status, email_error, email_message_id, email_attempts,
                       sms_status, sms_error, sms_message_id, sms_attempts, sms_segments, sms_cost, token_hash,
                       email_resolution, sms_resolution)
                WHERE r.send_id = \(sendID) AND r.customer_id = v.customer_id
                  AND r.customer_id BETWEEN \(lowest) AND \(highest)
                  AND (r.email_status IN ('pending', 'unknown') OR r.sms_status IN ('pending', 'unknown'))
                RETURNING r.email_status, r.sms_status, v.sms_segments, v.sms_cost
                """
            )
            var finished = FinishedTally()
            var segments = 0
            var cost = Decimal(0)
            for row in finals {
                segments += try row.decode("sms_segments", as: Int?.self) ?? 0
                cost += try row.decode("sms_cost", as: Decimal?.self) ?? 0
                finished.add(
                    email: try row.decode("email_status", as: ChannelStatus?.self),
                    sms: try row.decode("sms_status", as: ChannelStatus?.self)
                )
            }
            let (sent, failed) = (finished.sent, finished.failed)
            let unknown = UnknownTally(outcomes)
            let updated = try connection.execute(
                """
                UPDATE coupond.sends SET sent_count = sent_count + \(sent), failed_count = failed_count + \(failed),
                    email_sent_count = email_sent_count + \(finished.emailSent),
                    email_failed_count = email_failed_count + \(finished.emailFailed),
                    sms_sent_count = sms_sent_count + \(finished.smsSent),
                    sms_failed_count = sms_failed_count + \(finished.smsFailed),
                    sms_segments = sms_segments + \(segments), sms_cost = sms_cost + \(cost),
                    unknown_count = unknown_count + \(unknown.added),
                    reconciled_count = reconciled_count + \(unknown.settled),
                    lease_expires_at = now() + \(lease)::interval, heartbeat_at = now()
                WHERE id = \(sendID) AND lease_owner = \(owner)
                """
            )
            if updated == 0 { throw LeaseLost(sendID: sendID) }
            return (sent, failed)
        }
    }

    /// Ends a send whose recipients are all final: `done`, with its notice pending.
    ///
    /// - Returns: `false` when recipients are still pending.
    public func finish(sendID: Int64) throws -> Bool {
        try connection.execute(
            """
            UPDATE coupond.sends
            SET status = 'done', notice_status = 'pending', recipient_count = sent_count + failed_count
            WHERE id = \(sendID) AND lease_owner = \(owner) AND status = 'sending' AND recipients_after IS NULL
              AND NOT EXISTS (
                  SELECT 1 FROM coupond.send_recipients
                  WHERE send_id = \(sendID)
                    AND (email_status IN ('pending', 'unknown') OR sms_status IN ('pending', 'unknown')))
            """
        ) == 1
    }

    /// Records that the merchant's notice is being handed to the gateway, and says whether an earlier holder did so
    /// already (then it may have gone out).
    ///
    /// - Throws: ``LeaseLost`` when the send is no longer this holder's.
    /// - Returns: whether an earlier holder had handed it to the gateway.
    @discardableResult
    public func noteNoticeDispatched(sendID: Int64) throws -> Bool {
        let row = try connection.queryRow(
            """
            UPDATE coupond.sends s SET notice_dispatched_at = now()
            FROM (SELECT notice_dispatched_at FROM coupond.sends WHERE id = \(sendID)) AS before
            WHERE s.id = \(sendID) AND s.lease_owner = \(owner)
            RETURNING before.notice_dispatched_at IS NOT NULL AS dispatched_before
            """
        )
        guard let row else { throw LeaseLost(sendID: sendID) }
        return try row.decode("dispatched_before")
    }

    /// Records whether the merchant's notice went out.
    public func recordNotice(sendID: Int64, sent: Bool, error: String?) throws {
        try connection.execute(
            """
            UPDATE coupond.sends SET notice_status = \(sent ? NoticeStatus.sent : .failed), notice_error = \(error)
            WHERE id = \(sendID) AND lease_owner = \(owner)
            """
        )
    }
}

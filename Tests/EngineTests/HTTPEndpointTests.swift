import Curl
import Foundation
import Messages
import Postgres
import Signing
import TestSupport
import Testing

/// `coupond run`'s HTTP endpoints, driven over loopback with a real HTTP client.
@Suite(.serialized) struct HTTPEndpointTests {
    static let claimsKey = "claims-key-for-the-store-0123456789"

    /// Starts the daemon with its listener on a port the system picks, and returns the daemon and its base URL.
    static func startWithEndpoints(
        _ h: EngineHarness,
        extraLinks: String = "",
        extraHTTP: String = ""
    ) throws -> (ChildProcess, String) {
        let keyFile = h.folder.appendingPathComponent("claims-key")
        try Data(claimsKey.utf8).write(to: keyFile)
        let daemon = try h.startDaemon(
            config: try h.configuration(
                emailProvider: "webhook",
                smsProvider: "webhook",
                extraLinks: extraLinks,
                http: #""listen": "127.0.0.1:0", "claims_key_file": "\#(keyFile.path)""# + extraHTTP
            )
        )
        var address: String?
        let listening = eventually(timeout: 30) {
            let log = daemon.stderr
            if let found = log.range(of: "http.address=") {
                address = String(log[found.upperBound...].prefix { !$0.isWhitespace })
            }
            return address != nil
        }
        guard listening, let address else { throw HarnessError("no http listener: \(daemon.stderr.suffix(1500))") }
        return (daemon, "http://\(address)")
    }

    static func get(_ url: String) throws -> HTTPResponse {
        try CurlEasyClient().perform(HTTPRequest(url: url))
    }

    static func text(_ response: HTTPResponse) -> String { String(decoding: response.body, as: UTF8.self) }

    /// A finished send of `members` customers of whom `withoutConsent` gave no consent (they fail), its id.
    static func finishedSend(_ h: EngineHarness, members: Int, withoutConsent: Int) throws -> Int64 {
        let group = try h.fixtures.group(shop: h.shop, members: members)
        try h.db.connection.execute(
            """
            UPDATE coupond.customers SET email_consent = false, sms_consent = false
            WHERE id IN (SELECT customer_id FROM coupond.group_members WHERE group_id = \(group)
                         ORDER BY customer_id LIMIT \(withoutConsent))
            """
        )
        var unlimited = Fixtures.Coupon()
        unlimited.receiveLimit = nil
        let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop, unlimited))
        try h.arrive()
        #expect(try h.waitUntilFinished(send) == "done")
        #expect(try eventually(timeout: 30) { try h.send(send)["notice_status"] == "sent" })
        return send
    }

    @Test func healthAndReadinessAnswer() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try Self.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            let health = try Self.get(base + "/healthz")
            #expect(health.status == 200 && Self.text(health) == "ok\n")
            let ready = try Self.get(base + "/readyz")
            #expect(ready.status == 200 && Self.text(ready) == "ready\n", "\(Self.text(ready))")
            #expect(try Self.get(base + "/nowhere").status == 404)
        }
    }

    @Test func theNoticesReportLinkDownloadsTheCSVAndAlteredExpiredOrUnknownLinksAreRefused() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try Self.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            let send = try Self.finishedSend(h, members: 6, withoutConsent: 2)
            // The link as the merchant got it, in the notice email at the gateway.
            let notice = try h.messages().first { ($0["to"] as? String) == "owner@shop.example" }
            let noticeText = notice?["text"] as? String ?? ""
            let linkRange = try #require(
                noticeText.range(of: #"/reports/\d+\?expires=\d+&signature=[0-9a-f]+"#, options: .regularExpression)
            )
            let path = String(noticeText[linkRange])

            let report = try Self.get(base + path)
            #expect(report.status == 200, "\(Self.text(report))")
            #expect(report.headers["content-type"] == "text/csv; charset=utf-8")
            #expect(
                report.headers["content-disposition"] == "attachment; filename=\"coupond-send-\(send)-failures.csv\""
            )
            #expect(Array(report.body.prefix(3)) == [0xEF, 0xBB, 0xBF], "no UTF-8 byte-order mark")
            let lines = Self.text(report).dropFirst().split(separator: "\r\n")
            #expect(lines.first == #""customer_id","email","mobile","channel","reason""#)
            // Two customers without consent, each failed on both channels: one row per channel.
            #expect(lines.count == 5, "\(lines)")
            #expect(lines.dropFirst().filter { $0.hasSuffix(#","email","No marketing consent""#) }.count == 2)
            #expect(lines.dropFirst().filter { $0.hasSuffix(#","sms","No marketing consent""#) }.count == 2)

            var altered = path
            altered.removeLast()
            altered += path.hasSuffix("0") ? "1" : "0"
            #expect(try Self.get(base + altered).status == 403)
            #expect(try Self.get(base + "/reports/\(send)").status == 403)

            let installation: String = try h.db.connection.queryRow("SELECT id FROM coupond.installation")!.decode("id")
            let signer = ReportLinkSigner(key: Data(repeating: 9, count: 32), baseURL: base)
            let expired = try Self.get(
                signer.link(
                    sendID: send,
                    finishedAt: Date().addingTimeInterval(-8 * 24 * 3600),
                    installation: installation
                )
            )
            #expect(expired.status == 410)
            #expect(Self.text(expired).contains("This report link has expired"))
            #expect(expired.headers["content-type"] == "text/html; charset=utf-8")
            let unknown = try Self.get(signer.link(sendID: send + 1000, finishedAt: Date(), installation: installation))
            #expect(unknown.status == 404)
        }
    }

    @Test func claimsOverHTTPFollowTheDatabasesRulesUnderConcurrency() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try Self.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            let send = try Self.finishedSend(h, members: 5, withoutConsent: 0)
            let customers: [Int64] = try h.db.connection.query(
                "SELECT customer_id FROM coupond.send_recipients WHERE send_id = \(send) ORDER BY customer_id"
            ).map { try $0.decode("customer_id") }
            let tokens = ClaimTokenIssuer(key: Data(repeating: 7, count: 32))
            @Sendable func claim(_ body: String, key: String? = Self.claimsKey) throws -> HTTPResponse {
                try Self.postClaim(base, body, key: key)
            }
            @Sendable func body(_ customer: Int64, token: Int64? = nil) -> String {
                #"{"token": "\#(tokens.token(sendID: send, customerID: token ?? customer))", "customer_id": \#(customer)}"#
            }
            #expect(try claim(body(customers[0]), key: nil).status == 401)
            #expect(try claim(body(customers[0]), key: "wrong-key-wrong-key-wrong-key-wrong").status == 401)
            #expect(try claim(#"{"token": 5}"#).status == 400)
            let stranger = try claim(body(customers[1], token: customers[0]))
            #expect(stranger.status == 403)
            #expect(Self.text(stranger).contains("claim_customer_matches"))
            #expect(try claim(#"{"token": "not-a-token", "customer_id": 1}"#).status == 404)

            // Every customer claims twice at once: each gets the coupon exactly once.
            let statuses = Outcomes()
            concurrently(customers.count * 2) { index in
                let customer = customers[index / 2]
                let status = (try? claim(body(customer)).status) ?? 0
                statuses.add("\(customer):\(status)")
            }
            for customer in customers {
                let mine = statuses.values.filter { $0.hasPrefix("\(customer):") }.sorted()
                #expect(mine == ["\(customer):200", "\(customer):409"], "\(mine)")
            }
            let claimed: Int = try h.db.connection.queryRow(
                "SELECT count(*)::int AS n FROM coupond.coupon_claims WHERE send_id = \(send)"
            )!.decode("n")
            #expect(claimed == customers.count)
        }
    }
    @Test func anSMSCarriesAOneSegmentShortLinkThatRedirectsToTheClaimLinkAndRecordsTheFirstClick() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try Self.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            let send = try Self.finishedSend(h, members: 3, withoutConsent: 0)
            let sms = try h.messages().filter { $0["channel"] as? String == "sms" }
            #expect(sms.count == 3)
            let rows = try h.db.connection.query(
                """
                SELECT customer_id, mobile, sms_segments, encode(link_code, 'hex') AS code
                FROM coupond.send_recipients WHERE send_id = \(send) ORDER BY customer_id
                """
            )
            let tokens = ClaimTokenIssuer(key: Data(repeating: 7, count: 32))
            for row in rows {
                #expect(try row.decode("sms_segments", as: Int.self) == 1, "the SMS takes more than one segment")
                let mobile: String = try row.decode("mobile")
                let text = sms.first { $0["to"] as? String == mobile }?["text"] as? String ?? ""
                let found = try #require(
                    text.range(of: #"https://coupond\.example/c/[0-9A-Za-z]{18}"#, options: .regularExpression)
                )
                let code = String(text[found].suffix(18))
                #expect(
                    ShortLinkCode.decode(code).map { $0.map { String(format: "%02x", $0) }.joined() } == row["code"]
                )

                let redirect = try Self.get(base + "/c/" + code)
                #expect(redirect.status == 302)
                let customer: Int64 = try row.decode("customer_id")
                let location = redirect.headers["location"] ?? ""
                #expect(location.hasPrefix("https://shop.example/account/login?lang=en&coupon_claim_token="))
                #expect(location.contains("coupon_claim_token=\(tokens.token(sendID: send, customerID: customer))&"))
                #expect(location.contains("utm_medium=sms"))
            }
            let firstCustomer: Int64 = try rows[0].decode("customer_id")
            let clicked =
                "SELECT sms_clicked_at::text AS at FROM coupond.send_recipients WHERE customer_id = \(firstCustomer)"
            let firstClick = try h.db.connection.queryRow(PostgresQuery(unsafeSQL: clicked))?["at"]
            #expect(firstClick != nil)
            Thread.sleep(forTimeInterval: 0.05)
            let hex = Array(try #require(rows[0]["code"]).utf8)
            let bytes = stride(from: 0, to: hex.count, by: 2).compactMap {
                UInt8(String(decoding: hex[$0...$0 + 1], as: UTF8.self), radix: 16)
            }
            let code = ShortLinkCode.encode(bytes)
            let version = "SELECT xmin::text AS v FROM coupond.send_recipients WHERE customer_id = \(firstCustomer)"
            let before = try h.db.connection.queryRow(PostgresQuery(unsafeSQL: version))?["v"]
            for _ in 0..<20 { #expect(try Self.get(base + "/c/" + code).status == 302) }
            #expect(
                try h.db.connection.queryRow(PostgresQuery(unsafeSQL: clicked))?["at"] == firstClick,
                "a later click moved the first"
            )
            #expect(
                try h.db.connection.queryRow(PostgresQuery(unsafeSQL: version))?["v"] == before,
                "a click after the first wrote a new row version"
            )
            // The same code under /e/ leads to the claim link, but this send had no email with it to click: the
            // email is not counted as clicked for a customer it did not reach.
            try h.db.connection.execute(
                "UPDATE coupond.send_recipients SET email_status = 'failed', email_error = 'gateway_refused' WHERE customer_id = \(firstCustomer)"
            )
            #expect(try Self.get(base + "/e/" + code).status == 302)
            let emailClick =
                "SELECT email_clicked_at::text AS at FROM coupond.send_recipients WHERE customer_id = \(firstCustomer)"
            #expect(try h.db.connection.queryRow(PostgresQuery(unsafeSQL: emailClick))?["at"] == nil)
            #expect(try h.send(send).decode("email_clicked_count", as: Int.self) == 0)
            #expect(try Self.get(base + "/c/" + String(repeating: "0", count: 18)).status == 404)
            #expect(try Self.get(base + "/c/not-a-code").status == 404)
        }
    }

    @Test func emailsCarryShortLinksWhenAskedAndTheFunnelCountsFirstClicksAndClaimsPerChannel() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try Self.startWithEndpoints(h, extraLinks: #", "short_email_links": true"#)
            defer { _ = daemon.terminate() }
            let send = try Self.finishedSend(h, members: 3, withoutConsent: 0)
            let messages = try h.messages()
            func shortLink(_ channel: String, to address: String) throws -> String {
                let text =
                    messages.first { $0["channel"] as? String == channel && $0["to"] as? String == address }?[
                        "text"
                    ] as? String ?? ""
                let path = channel == "email" ? "e" : "c"
                let found = try #require(
                    text.range(of: #"https://coupond\.example/\#(path)/[0-9A-Za-z]{18}"#, options: .regularExpression),
                    "no short link in the \(channel) to \(address): \(text)"
                )
                return base + String(text[found].dropFirst("https://coupond.example".count))
            }
            let customers = try h.db.connection.query(
                "SELECT customer_id, email, mobile FROM coupond.send_recipients WHERE send_id = \(send) ORDER BY 1"
            )
            let (first, second) = (customers[0], customers[1])
            let firstID: Int64 = try first.decode("customer_id")

            let emailClick = try Self.get(try shortLink("email", to: try first.decode("email")))
            #expect(emailClick.status == 302)
            let location = emailClick.headers["location"] ?? ""
            let token = ClaimTokenIssuer(key: Data(repeating: 7, count: 32)).token(sendID: send, customerID: firstID)
            #expect(location.contains("coupon_claim_token=\(token)&") && location.contains("utm_medium=email"))
            // A second click of the same link, and the SMS links of two customers.
            #expect(try Self.get(try shortLink("email", to: try first.decode("email"))).status == 302)
            #expect(try Self.get(try shortLink("sms", to: try first.decode("mobile"))).status == 302)
            #expect(try Self.get(try shortLink("sms", to: try second.decode("mobile"))).status == 302)
            let claim = try Self.postClaim(base, #"{"token": "\#(token)", "customer_id": \#(firstID)}"#)
            #expect(claim.status == 200, "\(Self.text(claim))")

            let activity = try #require(
                try h.db.connection.queryRow("SELECT * FROM coupond.group_activity WHERE send_id = \(send)")
            )
            let counts = try [
                "email_sent_count", "email_failed_count", "email_clicked_count", "email_claimed_count",
                "sms_sent_count", "sms_failed_count", "sms_clicked_count", "sms_claimed_count", "claimed_count",
            ].map { try activity.decode($0, as: Int.self) }
            #expect(counts == [3, 0, 1, 1, 3, 0, 2, 1, 1])
            #expect(activity["claimed_percent"] == "33.3")

            let status = try runProduct(
                "coupond",
                ["status", "\(send)", "--config", try h.configuration().path],
                environment: h.db.environment.mapValues { $0 }
            )
            #expect(status.stdout.contains("Email       3 sent → 1 clicked (33.3%) → 1 claimed (33.3%); 0 failed"))
            #expect(status.stdout.contains("SMS         3 sent → 2 clicked (66.7%) → 1 claimed (33.3%); 0 failed"))
            #expect(status.stdout.contains("Claimed     1"), "\(status.stdout)")
        }
    }

    static func postClaim(_ base: String, _ body: String, key: String? = claimsKey) throws -> HTTPResponse {
        try CurlEasyClient().perform(
            HTTPRequest(
                method: "POST",
                url: base + "/claims",
                headers: [("Content-Type", "application/json")]
                    + (key.map { [("Authorization", "Bearer \($0)")] } ?? []),
                body: Data(body.utf8)
            )
        )
    }

    @Test func metricsShowTheMessagesTheGatewayRequestsAndTheSendsByStatus() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try Self.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            _ = try Self.finishedSend(h, members: 4, withoutConsent: 1)
            let response = try Self.get(base + "/metrics")
            #expect(response.status == 200)
            #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
            let lines = Set(Self.text(response).split(separator: "\n").map(String.init))
            for expected in [
                #"coupond_messages_total{channel="email",outcome="sent"} 3"#,
                #"coupond_messages_total{channel="sms",outcome="sent"} 3"#,
                #"coupond_recipients_total{outcome="sent"} 3"#,
                #"coupond_sends{status="done"} 1.0"#,
                #"coupond_sends{status="not_started"} 0.0"#,
                "coupond_scheduler_lag_seconds 0.0",
                "coupond_database_up 1.0",
            ] {
                #expect(lines.contains(expected), "missing: \(expected)\n\(Self.text(response).prefix(3000))")
            }
            // Every request the gateway answered is in a duration histogram: 3 emails, 3 SMS and the notice.
            let counts = lines.filter {
                $0.hasPrefix("coupond_gateway_request_duration_seconds_count{") && $0.contains(#"status="2xx""#)
            }
            let total = counts.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
            #expect(total == 7, "\(counts)")
            #expect(lines.contains { $0.hasPrefix("coupond_gateway_up{") && $0.hasSuffix(" 1.0") })
        }
    }

    @Test func aReportOfManyChunksArrivesWholeAndInOrder() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try Self.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            // Nobody consented: every customer fails at once, and the report is several 64 KiB chunks long.
            let customers = 4000
            let send = try Self.finishedSend(h, members: customers, withoutConsent: customers)
            let installation: String = try h.db.connection.queryRow("SELECT id FROM coupond.installation")!.decode("id")
            let finished: Date = try h.send(send).decode("finished_at")
            let link = ReportLinkSigner(key: Data(repeating: 9, count: 32), baseURL: base)
                .link(sendID: send, finishedAt: finished, installation: installation)
            let report = try Self.get(link)
            #expect(report.status == 200)
            #expect(report.body.count > 4 * 64 * 1024, "\(report.body.count) bytes")
            // One row per failed channel: each customer twice, email then SMS.
            let rows = Self.text(report).dropFirst().split(separator: "\r\n").dropFirst()
            #expect(rows.count == 2 * customers)
            let ids = rows.compactMap { Int64($0.dropFirst().prefix { $0 != "\"" }) }
            #expect(ids == ids.sorted() && Set(ids).count == customers, "rows missing, repeated or out of order")
            let channels = rows.map { $0.split(separator: ",", omittingEmptySubsequences: false)[3] }
            #expect(channels == Array(repeating: [#""email""#, #""sms""#], count: customers).flatMap { $0 })
        }
    }
}

import Curl
import Foundation
import Messages
import Postgres
import Storage
import TestSupport
import Testing

/// The exact SMS cost of a send, counted customer by customer, and a budget that scheduling checks and the engine
/// never goes over.
@Suite(.serialized) struct SMSBudgetTests {
    /// The send's SMS as the harness's daemon renders it: the default templates (and `templates`' locales), short
    /// links on `https://coupond.example`, 0.05 a segment.
    static func shape(
        _ h: EngineHarness,
        group: Int64,
        coupon: Int64,
        templates: URL = repositoryRoot.appendingPathComponent("templates"),
        shortLinks: Bool = true
    ) throws -> SMSShape {
        let source = try PreviewSource.load(
            on: h.db.connection,
            shopID: h.shop,
            groupID: group,
            couponID: coupon,
            customerID: nil
        )
        let message = try LocalizedTemplates(directory: templates).prepare(
            try Self.context(h, group: group, coupon: coupon)
        )
        let claimLinks = ClaimLink.Template(
            loginURL: source.loginURL,
            channel: .sms,
            campaign: ClaimLink.campaign(couponID: coupon)
        )
        let link = SMSShape.link(
            shortLinks: shortLinks
                ? ShortLinks(publicBaseURL: "https://coupond.example", email: false, sms: true) : nil,
            claimLinks: claimLinks
        )
        return SMSShape(message: message, link: try #require(link), pricePerSegment: Decimal(string: "0.05"))
    }

    @Test func theDatabaseCountsSegmentsAsTheEngineDoes() throws {
        try TestDatabase.with { db in
            let texts = [
                "hello", String(repeating: "a", count: 160), String(repeating: "a", count: 161),
                String(repeating: "a", count: 306), String(repeating: "a", count: 307),
                String(repeating: "{", count: 80), String(repeating: "{", count: 81), "Prix: 10€ [promo] ~ ^|\\",
                "Ça coûte 5 £ à Zürich", "ça", "Δ Φ Γ Λ Ω Π Ψ Σ Θ Ξ", "مرحبا بك", String(repeating: "ب", count: 70),
                String(repeating: "ب", count: 71), "😀" + String(repeating: "a", count: 68),
                "😀" + String(repeating: "a", count: 69), "line\nbreak\r\u{0C}form", "tab\there", "",
            ]
            for text in texts {
                let database: Int = try db.connection.queryRow("SELECT coupond.sms_segments(\(text)) AS n")!.decode("n")
                #expect(database == SMSSegments(text: text).count, "\(text.prefix(20))…: \(database)")
            }
        }
    }

    @Test func theEstimateIsEachReachableCustomersOwnSMSInTheirLocaleWithTheirNameAndLink() throws {
        try EngineHarness.with { h in
            let group = try h.fixtures.group(shop: h.shop, members: 9)
            let ids: [Int64] = try h.db.connection.query(
                "SELECT customer_id FROM coupond.group_members WHERE group_id = \(group) ORDER BY customer_id"
            ).map { try $0.decode("customer_id") }
            let statements: [PostgresQuery] = [
                "UPDATE coupond.customers SET name = 'Bartholomew-Maximilian ' || repeat('Featherstonehaugh ', 4) WHERE id = \(ids[1])",
                "UPDATE coupond.customers SET name = 'مريم' WHERE id = \(ids[2])",
                "UPDATE coupond.customers SET name = NULL WHERE id = \(ids[3])",
                "UPDATE coupond.customers SET locale = 'fr_CA' WHERE id = \(ids[4])",
                "UPDATE coupond.customers SET sms_consent = false WHERE id = \(ids[5])",
                "INSERT INTO coupond.opt_outs (customer_id, channel, source) VALUES (\(ids[6]), 'sms', 'sms_stop')",
                // White space at a name's ends, and characters of GSM-7's extension table and outside it.
                "UPDATE coupond.customers SET name = '  Ann  ' WHERE id = \(ids[7])",
                "UPDATE coupond.customers SET name = '{Zoë} [VIP] €' WHERE id = \(ids[8])",
            ]
            for statement in statements { try h.db.connection.execute(statement) }
            let templates = try LocaleTests.templatesFolder(h)
            // The default SMS greets the customer by name, so that the name's length and script count.
            try Data(
                "{{#customer_name}}Hi {{customer_name}}! {{/customer_name}}{{shop_name}}: a coupon for you, {{coupon_title}}. Claim it: {{sms_link}} Reply STOP to opt out."
                    .utf8
            ).write(to: templates.appendingPathComponent("sms.mustache"))
            let coupon = try h.fixtures.coupon(shop: h.shop)
            for shortLinks in [true, false] {
                let shape = try Self.shape(
                    h,
                    group: group,
                    coupon: coupon,
                    templates: templates,
                    shortLinks: shortLinks
                )
                let rows = try h.db.connection.query(
                    """
                    SELECT customer_id, locale, segments
                    FROM coupond.sms_estimate(\(h.shop), \(group), 4242, \(shape.json)::jsonb) ORDER BY customer_id
                    """
                )
                // What the engine renders for each: its prepared message, with a link of the real length.
                let localized = try LocalizedTemplates(directory: templates)
                var expected: [[String]] = []
                for id in ids.prefix(5) + ids.suffix(2) {
                    let customer = try h.db.connection.queryRow(
                        "SELECT name, locale FROM coupond.customers WHERE id = \(id)"
                    )!
                    let locale = localized.locale(customer: customer["locale"], shop: nil)
                    let message = localized.prepare(try Self.context(h, group: group, coupon: coupon)).message(locale)
                    let link =
                        shortLinks
                        ? "https://coupond.example/c/" + String(repeating: "Q", count: ShortLinkCode.length)
                        : try #require(
                            ClaimLink.Template(
                                loginURL: "https://shop.example/account/login?lang=en",
                                channel: .sms,
                                campaign: ClaimLink.campaign(couponID: coupon)
                            )
                        ).link(token: "4242.\(id)." + String(repeating: "Q", count: 43))
                    let sms = message.render(customerName: customer["name"], emailLink: "", smsLink: link)
                    expected.append(["\(id)", locale ?? "", "\(sms.smsSegments.count)"])
                }
                let counted = rows.map { [$0["customer_id"] ?? "", $0["locale"] ?? "", $0["segments"] ?? ""] }
                #expect(counted == expected, "short links \(shortLinks)")
                // The long name takes one more segment, the Arabic name makes the SMS UCS-2 (67 characters a segment),
                // and the full link is longer than the short: no single sample could say.
                #expect(
                    counted.prefix(5).map { $0[2] }
                        == (shortLinks ? ["1", "2", "2", "1", "1"] : ["2", "3", "4", "2", "2"]),
                    "\(counted)"
                )
                #expect(counted[4][1] == "fr")
            }
        }
    }

    /// The send's values as the engine renders them, without a customer or links.
    static func context(_ h: EngineHarness, group: Int64, coupon: Int64) throws -> MessageContext {
        let source = try PreviewSource.load(
            on: h.db.connection,
            shopID: h.shop,
            groupID: group,
            couponID: coupon,
            customerID: nil
        )
        return MessageContext(
            shopName: source.shopName,
            customerName: nil,
            couponTitle: source.couponTitle,
            couponDescription: source.couponDescription,
            couponEndsAt: source.couponEndsAt.map { ShopTime.format($0, timeZone: source.timeZone) },
            emailLink: "",
            smsLink: "",
            shopPostalAddress: source.shopPostalAddress ?? ""
        )
    }

    static func insert(_ h: EngineHarness, group: Int64, coupon: Int64, budget: String?, shape: String?) throws
        -> PostgresError?
    {
        do {
            try h.db.connection.execute(
                """
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at, sms_budget,
                                           sms_shape)
                VALUES (\(h.shop), \(group), \(coupon), false, true, \(utc(2026, 12, 1, 12)), \(budget)::numeric,
                        \(shape)::jsonb)
                """
            )
            return nil
        } catch let error as PostgresError {
            return error
        }
    }

    @Test func schedulingRefusesABudgetBelowTheExactCostOrWithoutAnEstimate() throws {
        try EngineHarness.with { h in
            let group = try h.fixtures.group(shop: h.shop, members: 10)
            let coupon = try h.fixtures.coupon(shop: h.shop)
            let shape = try Self.shape(h, group: group, coupon: coupon).json
            // Ten customers, one segment each at 0.05: 0.50.
            let over = try #require(try Self.insert(h, group: group, coupon: coupon, budget: "0.45", shape: shape))
            #expect(over.constraint == "sends_sms_budget_exceeded")
            #expect(
                over.message
                    == "the SMS would cost 0.5 USD (10 segments for 10 customers), over the budget of 0.45 USD",
                "\(over.message)"
            )
            let unestimated = try #require(try Self.insert(h, group: group, coupon: coupon, budget: "5", shape: nil))
            #expect(unestimated.constraint == "sends_sms_budget_estimated")
            #expect(try Self.insert(h, group: group, coupon: coupon, budget: "0.50", shape: shape) == nil)
            let changed = #expect(throws: PostgresError.self) {
                try h.db.connection.execute("UPDATE coupond.sends SET sms_budget = 100")
            }
            #expect(changed?.constraint == "sends_immutable")
        }
    }

    @Test func theEngineSendsNoSMSOverTheBudgetAndFailsTheRestAsBudgetExhausted() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration(batchSize: 4))
            defer { _ = daemon.terminate() }
            let group = try h.fixtures.group(shop: h.shop, members: 10)
            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let coupon = try h.fixtures.coupon(shop: h.shop, unlimited)
            #expect(
                try Self.insert(
                    h,
                    group: group,
                    coupon: coupon,
                    budget: "0.50",
                    shape: try Self.shape(h, group: group, coupon: coupon).json
                ) == nil
            )
            let send: Int64 = try h.db.connection.queryRow("SELECT max(id) AS id FROM coupond.sends")!.decode("id")
            // The group grows after scheduling: at the hour the budget pays for ten of its fifteen customers.
            let more = try h.fixtures.group(shop: h.shop, members: 5, name: "Later")
            try h.db.connection.execute(
                "INSERT INTO coupond.group_members (group_id, customer_id) SELECT \(group), customer_id FROM coupond.group_members WHERE group_id = \(more)"
            )
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done", "\(daemon.stderr.suffix(1500))")
            let row = try h.db.connection.queryRow(
                """
                SELECT count(*) FILTER (WHERE sms_status = 'sent')::int AS sent,
                       count(*) FILTER (WHERE sms_error = 'budget_exhausted')::int AS left_out,
                       sum(sms_cost) AS cost
                FROM coupond.send_recipients WHERE send_id = \(send)
                """
            )!
            #expect(try row.decode("sent", as: Int.self) == 10)
            #expect(try row.decode("left_out", as: Int.self) == 5)
            #expect(try row.decode("cost", as: Decimal.self) == Decimal(string: "0.5"))
            let smsMessages = try h.messages().filter { $0["channel"] as? String == "sms" }
            #expect(smsMessages.count == 10)
            var report: [String] = []
            try FailureReport.rows(sendID: send, on: h.db.connection) {
                report.append($0.compactMap { $0 }.joined(separator: ","))
            }
            #expect(
                report.filter {
                    $0.hasSuffix("SMS budget exhausted: the send's SMS budget could not pay for this message")
                }.count == 5,
                "\(report)"
            )
        }
    }

    @Test func aKilledDaemonsSendStaysWithinItsBudgetAfterTheRestart() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5}"#) { h in
            let group = try h.fixtures.group(shop: h.shop, members: 400)
            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let coupon = try h.fixtures.coupon(shop: h.shop, unlimited)
            let shape = try Self.shape(h, group: group, coupon: coupon).json
            #expect(try Self.insert(h, group: group, coupon: coupon, budget: "20", shape: shape) == nil)
            let send: Int64 = try h.db.connection.queryRow("SELECT max(id) AS id FROM coupond.sends")!.decode("id")
            let more = try h.fixtures.group(shop: h.shop, members: 200, name: "Later")
            try h.db.connection.execute(
                """
                INSERT INTO coupond.group_members (group_id, customer_id)
                SELECT \(group), customer_id FROM coupond.group_members WHERE group_id = \(more)
                """
            )
            let config = try h.configuration(leaseSeconds: 2, batchSize: 25)
            let first = try h.startDaemon(config: config, instance: "first")
            try h.arrive()
            #expect(try eventually(timeout: 60) { (try h.send(send).decode("sent_count", as: Int.self)) >= 100 })
            first.crash()
            let sentAtCrash: Int = try h.db.connection.queryRow(
                "SELECT count(*)::int AS n FROM coupond.send_recipients WHERE send_id = \(send) AND sms_status = 'sent'"
            )!.decode("n")
            #expect(sentAtCrash < 400, "the first instance finished the budget before it was killed")
            let second = try h.startDaemon(config: config, instance: "second")
            defer { _ = second.terminate() }
            #expect(try h.waitUntilFinished(send, timeout: 120) == "done", "\(second.stderr.suffix(1500))")
            let row = try h.db.connection.queryRow(
                """
                SELECT count(*) FILTER (WHERE sms_status = 'sent')::int AS sent,
                       count(*) FILTER (WHERE sms_error = 'budget_exhausted')::int AS left_out
                FROM coupond.send_recipients WHERE send_id = \(send)
                """
            )!
            #expect(try row.decode("sent", as: Int.self) == 400)
            #expect(try row.decode("left_out", as: Int.self) == 200)
            // What the gateway took, whatever the crash cut short: 400 customers, each once.
            let taken = try h.messages().filter { $0["channel"] as? String == "sms" }.compactMap { $0["to"] as? String }
            #expect(taken.count == 400 && Set(taken).count == 400, "\(taken.count) SMS to \(Set(taken).count) numbers")
        }
    }

    @Test func previewPrintsTheExactCostAndScheduleHoldsASendToItsBudget() throws {
        try EngineHarness.with { h in
            let group = try h.fixtures.group(shop: h.shop, members: 10)
            try h.db.connection.execute(
                "UPDATE coupond.customers SET sms_consent = false WHERE id = (SELECT max(customer_id) FROM coupond.group_members WHERE group_id = \(group))"
            )
            let coupon = try h.fixtures.coupon(shop: h.shop)
            let config = try h.configuration().path
            let environment = h.db.environment.mapValues { Optional($0) }
            let ids = ["--shop", "\(h.shop)", "--group", "\(group)", "--coupon", "\(coupon)"]
            let preview = try runProduct(
                "coupond",
                ["preview"] + ids + ["--config", config, "--json"],
                environment: environment
            )
            #expect(preview.status == 0, "\(preview.stderr)")
            let output = try JSONSerialization.jsonObject(with: Data(preview.stdout.utf8)) as? [String: Any]
            #expect(output?["sms_recipients"] as? Int == 9)
            #expect(output?["sms_segments_total"] as? Int == 9)
            #expect(output?["sms_recipients_by_segments"] as? [String: Int] == ["1": 9])
            #expect((output?["sms_estimated_fee"] as? NSNumber)?.decimalValue == Decimal(string: "0.45"))
            #expect((output?["sms_shape"] as? [String: Any])?["price_per_segment"] as? String == "0.05")

            func schedule(_ budget: String) throws -> ProcessResult {
                try runProduct(
                    "coupond",
                    ["schedule"] + ids + [
                        "--channels", "sms", "--at", "2026-12-01 12:00", "--sms-budget", budget, "--config", config,
                    ],
                    environment: environment
                )
            }
            let refused = try schedule("0.40")
            #expect(refused.status == 65)
            #expect(
                refused.stderr.contains(
                    "the SMS would cost 0.45 USD (9 segments for 9 customers), over the budget of 0.4 USD"
                ),
                "\(refused.stderr)"
            )
            let accepted = try schedule("0.45")
            #expect(accepted.status == 0, "\(accepted.stderr)")
            let estimate = try h.db.connection.queryRow(
                """
                SELECT s.sms_budget, (SELECT sum(e.segments)::int FROM coupond.sms_estimate(s) e) AS segments
                FROM coupond.sends s
                """
            )
            #expect(estimate?["segments"] == "9")
            #expect(estimate?["sms_budget"] == "0.4500")
        }
    }
}

import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Messages whose fate is unknown, against a simulator that, like SendGrid and Twilio, delivers a repeated request
/// again: nobody gets a message twice, and every unknown message is reconciled or reported.
@Suite(.serialized) struct UnknownOutcomeTests {
    static let nonIdempotent = #""non_idempotent": true"#

    /// How many recipients of `send` ended with each value of `column`.
    static func counts(_ h: EngineHarness, send: Int64, _ column: String) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try h.db.connection.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT coalesce(\(column), '-') AS value, count(*)::int AS n FROM coupond.send_recipients
                    WHERE send_id = \(send) GROUP BY 1
                    """
            )
        ) {
            counts[row["value"] ?? "-"] = try row.decode("n", as: Int.self)
        }
        return counts
    }

    static func scheduleSend(_ h: EngineHarness, customers: Int, email: Bool, sms: Bool) throws -> Int64 {
        let group = try h.fixtures.group(shop: h.shop, members: customers)
        var coupon = Fixtures.Coupon()
        coupon.receiveLimit = nil
        return try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop, coupon), email: email, sms: sms)
    }

    @Test func anSMSWhoseAnswerWasLostIsFoundInTwiliosListAndNotSentAgain() throws {
        try EngineHarness.with(faults: "{\(Self.nonIdempotent), \"lost_answer_rate\": 0.1}") { h in
            let customers = 300
            let send = try Self.scheduleSend(h, customers: customers, email: false, sms: true)
            let daemon = try h.startDaemon(config: try h.configuration(batchSize: 50))
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send, timeout: 90) == "done", "\(daemon.stderr.suffix(2000))")
            let stats = try h.stats()
            #expect((stats["lost_answers"] ?? 0) > 0, "no answer was lost; the test proves nothing")
            #expect(stats["redelivered"] == 0, "a customer got an SMS twice")
            #expect(stats["accepted"] == customers + 1, "every customer and the merchant's notice once")
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == customers)
            #expect(try row.decode("unknown_count", as: Int.self) == 0)
            let found = try Self.counts(h, send: send, "sms_resolution")["found_at_provider"] ?? 0
            // The merchant's notice (an email through SendGrid) may lose its answer too: it is then unconfirmed.
            let noticeLost = row["notice_error"] == "delivery_unconfirmed" ? 1 : 0
            #expect(found + noticeLost == stats["lost_answers"], "every lost answer is found in the provider's list")
            #expect(try row.decode("reconciled_count", as: Int.self) == found)
        }
    }

    @Test func anEmailWhoseAnswerWasLostIsReportedUnconfirmedAndNotSentAgainBySendGrid() throws {
        try EngineHarness.with(faults: "{\(Self.nonIdempotent), \"lost_answer_rate\": 0.1}") { h in
            let customers = 200
            let send = try Self.scheduleSend(h, customers: customers, email: true, sms: false)
            let daemon = try h.startDaemon(config: try h.configuration(batchSize: 50))
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send, timeout: 90) == "done", "\(daemon.stderr.suffix(2000))")
            let stats = try h.stats()
            let lost = stats["lost_answers"] ?? 0
            #expect(lost > 0, "no answer was lost; the test proves nothing")
            #expect(stats["redelivered"] == 0, "a customer got an email twice")
            // The merchant's notice may lose its answer too; every other lost answer is one customer.
            let unconfirmed = try Self.counts(h, send: send, "email_error")["delivery_unconfirmed"] ?? 0
            #expect(unconfirmed >= lost - 1 && unconfirmed <= lost)
            #expect(try Self.counts(h, send: send, "email_resolution")["skipped_by_policy"] == unconfirmed)
            let row = try h.send(send)
            #expect(try row.decode("failed_count", as: Int.self) == unconfirmed)
            #expect(try row.decode("sent_count", as: Int.self) == customers - unconfirmed)
            var reasons: [String] = []
            try FailureReport.rows(sendID: send, on: h.db.connection) {
                reasons.append(($0[3] ?? "") + ": " + ($0[4] ?? ""))
            }
            #expect(reasons.count == unconfirmed)
            #expect(reasons.allSatisfy { $0.hasPrefix("email: Delivery unconfirmed") }, "\(reasons.prefix(3))")
        }
    }

    @Test func theResendPolicySendsAnUnconfirmedEmailAgainAndRecordsThatItChoseTo() throws {
        try EngineHarness.with(faults: "{\(Self.nonIdempotent), \"lost_answer_rate\": 0.1}") { h in
            let customers = 200
            let send = try Self.scheduleSend(h, customers: customers, email: true, sms: false)
            let daemon = try h.startDaemon(
                config: try h.configuration(batchSize: 50, extraEmail: #", "on_unknown": "resend""#)
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send, timeout: 90) == "done", "\(daemon.stderr.suffix(2000))")
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == customers)
            let resent = try Self.counts(h, send: send, "email_resolution")["resent_by_policy"] ?? 0
            #expect(resent > 0)
            // Each resend after a lost answer is a second email the customer really got: the policy's price. Only a
            // lost answer leads to one (a resent email may lose its answer again).
            let stats = try h.stats()
            let redelivered = stats["redelivered"] ?? 0
            #expect(redelivered >= resent - 1 && redelivered <= stats["lost_answers"] ?? 0)
        }
    }

    @Test func aKilledDaemonsInFlightSMSAreReconciledByTheNextHolderNotSentTwice() throws {
        // Every answer takes 400 ms, so a batch is always out when the daemon dies.
        try EngineHarness.with(
            faults: "{\(Self.nonIdempotent), \"delay_rate\": 1.0, \"delay_milliseconds\": 400}"
        ) { h in
            let customers = 600
            let send = try Self.scheduleSend(h, customers: customers, email: false, sms: true)
            let config = try h.configuration(leaseSeconds: 2, batchSize: 50)
            let first = try h.startDaemon(config: config, instance: "first")
            try h.arrive()
            #expect(try eventually(timeout: 60) { (try h.send(send).decode("sent_count", as: Int.self)) >= 100 })
            first.crash()
            #expect(try h.send(send)["status"] == "sending")
            let second = try h.startDaemon(config: config, instance: "second")
            defer { _ = second.terminate() }
            #expect(try h.waitUntilFinished(send, timeout: 120) == "done", "\(second.stderr.suffix(2000))")
            #expect(second.stderr.contains("messages the previous holder had out are unknown"))
            let stats = try h.stats()
            #expect(stats["redelivered"] == 0, "a customer got an SMS twice")
            #expect(stats["accepted"] == customers + 1, "every customer and the merchant's notice once")
            #expect((stats["listings"] ?? 0) > 0)
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == customers)
            #expect(try row.decode("unknown_count", as: Int.self) == 0)
            #expect((try Self.counts(h, send: send, "sms_resolution")["found_at_provider"] ?? 0) > 0)
        }
    }

    @Test func anSMSOverSixteenHundredCharactersFailsWithoutARequestAndTheEmailStillGoes() throws {
        try EngineHarness.with { h in
            let group = try h.fixtures.group(shop: h.shop, members: 5)
            let coupon = try h.fixtures.coupon(shop: h.shop)
            let send = try h.schedule(group: group, coupon: coupon)
            // Scheduled through SQL, which cannot render the templates; the title grows after the check.
            try h.db.connection.execute(
                "UPDATE coupond.coupons SET title = repeat('Big sale ', 200) WHERE id = \(coupon)"
            )
            let daemon = try h.startDaemon(
                config: try h.configuration(emailProvider: "webhook", smsProvider: "webhook")
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done", "\(daemon.stderr.suffix(1500))")
            #expect(try Self.counts(h, send: send, "sms_error") == ["message_too_long": 5])
            #expect(try Self.counts(h, send: send, "email_status") == ["sent": 5])
            #expect(try h.messages().allSatisfy { $0["channel"] as? String == "email" })
            #expect(try h.send(send).decode("sent_count", as: Int.self) == 5)
        }
    }

    @Test(arguments: ["sendgrid", "webhook"])
    func aNoticeAnEarlierHolderHandedToTheGatewayIsSettledNotSentAgainBlind(provider: String) throws {
        // The simulator behaves as the provider does: SendGrid delivers a repeat again, the webhook drops it.
        try EngineHarness.with(faults: provider == "sendgrid" ? "{\(Self.nonIdempotent)}" : "{}") { h in
            let send = try Self.scheduleSend(h, customers: 5, email: true, sms: false)
            let config = try h.configuration(emailProvider: provider)
            var daemon = try h.startDaemon(config: config)
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done", "\(daemon.stderr.suffix(1500))")
            _ = daemon.terminate()
            // As a holder that crashed with the notice out would have left it.
            try h.db.connection.execute(
                "UPDATE coupond.sends SET notice_status = 'pending', notice_dispatched_at = now() WHERE id = \(send)"
            )
            let before = try h.messages().filter { $0["to"] as? String == "owner@shop.example" }.count
            daemon = try h.startDaemon(config: config)
            defer { _ = daemon.terminate() }
            #expect(try eventually(timeout: 30) { try h.send(send)["notice_status"] != "pending" })
            let after = try h.messages().filter { $0["to"] as? String == "owner@shop.example" }.count
            #expect(after == before, "the merchant got the notice twice")
            let row = try h.send(send)
            if provider == "sendgrid" {
                // SendGrid would deliver it again: with on_unknown = skip, the notice is recorded unconfirmed.
                #expect(row["notice_status"] == "failed")
                #expect(row["notice_error"] == "delivery_unconfirmed")
            } else {
                // The webhook drops the repeated key: sent again with it, and recorded sent.
                #expect(row["notice_status"] == "sent")
                #expect(try h.stats()["duplicates"] == 1)
            }
            #expect(daemon.stderr.contains("merchant notice may have gone out before"))
        }
    }
}

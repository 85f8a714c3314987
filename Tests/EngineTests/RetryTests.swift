import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Retry only the failed: a send of the same coupon to the customers an earlier send failed, on the channels that
/// failed them, computed at its hour.
@Suite(.serialized) struct RetryTests {
    /// A finished send of 8 customers in which ids[0]'s email was refused, ids[1]'s SMS number was refused as invalid,
    /// ids[2] had no SMS consent and ids[3] neither address; returns the send and the ids.
    static func sendWithFailures(_ h: EngineHarness, _ daemon: ChildProcess) throws -> (
        send: Int64, ids: [Int64], group: Int64, coupon: Int64
    ) {
        let group = try h.fixtures.group(shop: h.shop, members: 8)
        var unlimited = Fixtures.Coupon()
        unlimited.receiveLimit = nil
        let coupon = try h.fixtures.coupon(shop: h.shop, unlimited)
        let ids: [Int64] = try h.db.connection.query(
            "SELECT customer_id FROM coupond.group_members WHERE group_id = \(group) ORDER BY customer_id"
        ).map { try $0.decode("customer_id") }
        let customer = { (id: Int64) in
            try h.db.connection.queryRow("SELECT * FROM coupond.customers WHERE id = \(id)")!
        }
        let refusedEmail = try customer(ids[0])["email"]!
        let refusedNumber = try customer(ids[1])["mobile"]!
        try h.db.connection.execute("UPDATE coupond.customers SET sms_consent = false WHERE id = \(ids[2])")
        try h.db.connection.execute("UPDATE coupond.customers SET email = NULL, mobile = NULL WHERE id = \(ids[3])")
        try h.setFaults(#"{"refuse": ["\#(refusedEmail)"], "invalid_numbers": ["\#(refusedNumber)"]}"#)
        let send = try h.schedule(group: group, coupon: coupon)
        try h.arrive()
        let status = try h.waitUntilFinished(send)
        let reason = try h.send(send)["failure_reason"]
        #expect(status == "done", "\(reason ?? ""): \(daemon.stderr.suffix(1500))")
        return (send, ids, group, coupon)
    }

    func retry(_ h: EngineHarness, _ arguments: [String]) throws -> ProcessResult {
        try runProduct(
            "coupond",
            ["retry"] + arguments + ["--config", try h.configuration().path],
            environment: h.db.environment.mapValues { $0 }
        )
    }

    @Test func aRetryReachesOnlyTheFailedCustomersStillInTheGroupOnTheChannelsThatFailedThem() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            let (send, ids, group, _) = try Self.sendWithFailures(h, daemon)
            // Before the retry's hour: the gateway takes the email again, ids[2] consents, ids[1] leaves the group.
            try h.setFaults("{}")
            try h.db.connection.execute("UPDATE coupond.customers SET sms_consent = true WHERE id = \(ids[2])")
            try h.db.connection.execute(
                "UPDATE coupond.group_members SET removed_at = now() WHERE group_id = \(group) AND customer_id = \(ids[1])"
            )
            let before = try h.messages().count

            let scheduled = try retry(h, ["\(send)", "--at", "2026-12-01T14:00:00Z", "--json"])
            #expect(scheduled.status == 0, "\(scheduled.stderr)")
            let summary = try JSONSerialization.jsonObject(with: Data(scheduled.stdout.utf8)) as? [String: Any]
            let retrySend = try #require(summary?["send_id"] as? Int64)
            #expect(summary?["retry_of"] as? Int64 == send)
            try h.arrive(hoursAhead: 4)
            #expect(try h.waitUntilFinished(retrySend) == "done", "\(daemon.stderr.suffix(1500))")

            let recipients = try h.db.connection.query(
                """
                SELECT customer_id, email_status, sms_status FROM coupond.send_recipients
                WHERE send_id = \(retrySend) ORDER BY customer_id
                """
            ).map { row in "\(row["customer_id"] ?? ""):\(row["email_status"] ?? "-"):\(row["sms_status"] ?? "-")" }
            // ids[0] gets the email alone (its SMS went out), ids[2] the SMS alone, ids[3] fails again on both;
            // ids[1] left the group, and nobody the first send reached is written at all.
            #expect(recipients == ["\(ids[0]):sent:-", "\(ids[2]):-:sent", "\(ids[3]):failed:failed"], "\(recipients)")
            let row = try h.send(retrySend)
            #expect(try row.decode("recipient_count", as: Int.self) == 3)
            #expect(try row.decode("sent_count", as: Int.self) == 2)
            #expect(try row.decode("failed_count", as: Int.self) == 1)
            let customerMessages = try h.messages().dropFirst(before).filter {
                $0["to"] as? String != "owner@shop.example"
            }
            #expect(customerMessages.count == 2, "\(customerMessages.map { $0["to"] ?? "" })")

            let status = try runProduct(
                "coupond",
                ["status", "\(retrySend)", "--config", try h.configuration().path],
                environment: h.db.environment.mapValues { $0 }
            )
            #expect(status.stdout.contains("Retries     the failed customers of send \(send)"), "\(status.stdout)")
        }
    }

    @Test func aRetryCanBeNarrowedToAChannelOrAReasonAndIsRefusedWhenNothingIsLeftToRetry() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            let (send, ids, _, coupon) = try Self.sendWithFailures(h, daemon)
            let at = ["--at", "2026-12-01T14:00:00Z"]

            // Only the gateways' refusals: ids[0]'s email, and ids[1]'s number refused as invalid.
            let refused = try retry(h, ["\(send)"] + at + ["--reasons", "gateway_refused,invalid_mobile_number"])
            #expect(refused.status == 0, "\(refused.stderr)")
            #expect(
                refused.stdout.contains("the failed customers of send \(send) (gateway refused, invalid mobile number)")
            )
            let count: Int = try h.db.connection.queryRow(
                """
                SELECT coupond.retry_recipient_count(s)::int AS n FROM coupond.sends s
                WHERE retry_of = \(send) AND retry_reasons = '{gateway_refused,invalid_mobile_number}'
                """
            )!.decode("n")
            #expect(count == 2)

            // Only SMS for no consent: ids[2] and ids[3]'s missing number does not count (another reason).
            let sms = try retry(h, ["\(send)"] + at + ["--channels", "sms", "--reasons", "no_consent", "--json"])
            #expect(sms.status == 0, "\(sms.stderr)")
            #expect(sms.stdout.contains(#""send_email" : false"#) || sms.stdout.contains(#""email" : false"#))

            let nothing = try retry(h, ["\(send)"] + at + ["--channels", "email", "--reasons", "message_too_long"])
            #expect(nothing.status == 65)
            #expect(nothing.stderr.contains("[retry_has_failures]"), "\(nothing.stderr)")

            let unknownReason = try retry(h, ["\(send)"] + at + ["--reasons", "bad_luck"])
            #expect(unknownReason.status == 64)
            #expect(unknownReason.stderr.contains("bad_luck is not a failure reason"))

            // A send that has not ended cannot be retried, and a retry is on the hour like any send.
            let pending = try h.schedule(
                group: try h.fixtures.group(shop: h.shop, members: 1),
                coupon: coupon,
                hoursAhead: 8
            )
            let early = try retry(h, ["\(pending)"] + at)
            #expect(early.status == 65)
            #expect(early.stderr.contains("[retry_of_done]"), "\(early.stderr)")
            let offHour = try retry(h, ["\(send)", "--at", "2026-12-01T14:30:00Z"])
            #expect(offHour.status == 65)
            #expect(offHour.stderr.contains("[sends_scheduled_on_the_hour]"), "\(offHour.stderr)")
            #expect(ids.count == 8)
        }
    }

    @Test func theRetryColumnsCannotBeChangedOrForgedByThePlatform() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            let (send, _, _, _) = try Self.sendWithFailures(h, daemon)
            let id: Int64 = try h.db.connection.queryRow(
                "SELECT coupond.retry_failed(\(send), '2026-12-01T14:00:00Z', NULL, NULL) AS id"
            )!.decode("id")
            #expect(throws: PostgresError.self) {
                try h.db.connection.execute("UPDATE coupond.sends SET retry_of = NULL WHERE id = \(id)")
            }
            // The platform role inserts only a send's own columns; retrying goes through coupond.retry_failed.
            let platform = try h.db.connect()
            defer { platform.close() }
            try platform.execute("SET ROLE coupond_platform")
            #expect(throws: PostgresError.self) {
                try platform.execute(
                    """
                    INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at, retry_of)
                    SELECT shop_id, group_id, coupon_id, true, false, '2026-12-01T15:00:00Z', id
                    FROM coupond.sends WHERE id = \(send)
                    """
                )
            }
            let viaFunction = try platform.queryRow(
                "SELECT coupond.retry_failed(\(send), '2026-12-01T15:00:00Z', '{email}', NULL) AS id"
            )
            #expect(viaFunction?["id"] != nil)
        }
    }
}

import Foundation
import Postgres
import TestSupport
import Testing

/// The coupon watch: a merchant whose scheduled send would fail at its hour hears of it while cancel is possible.
@Suite(.serialized) struct CouponWatchTests {
    static let merchant = "owner@shop.example"

    /// The warning emails the merchant got.
    static func warnings(_ h: EngineHarness) throws -> [[String: Any]] {
        try h.messages().filter {
            $0["to"] as? String == merchant && ($0["subject"] as? String ?? "").hasPrefix("Action needed")
        }
    }

    @Test func anUnpublishedCouponWarnsTheMerchantOnceNamingTheProblemAndTheLastMomentToCancel() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            let coupon = try h.fixtures.coupon(shop: h.shop)
            let send = try h.schedule(
                group: try h.fixtures.group(shop: h.shop, members: 3),
                coupon: coupon,
                hoursAhead: 4
            )
            Thread.sleep(forTimeInterval: 0.5)
            #expect(try Self.warnings(h).isEmpty, "a send that will go out was warned about")

            try h.db.connection.execute("UPDATE coupond.coupons SET status = 'unpublished' WHERE id = \(coupon)")
            #expect(try eventually(timeout: 10) { try Self.warnings(h).count == 1 }, "\(daemon.stderr.suffix(1500))")
            let text = try Self.warnings(h)[0]["text"] as? String ?? ""
            #expect(text.contains("Problem:    coupon \(coupon) is not published"), "\(text)")
            #expect(text.contains("cancel the send until 2026-12-01 12:00"), "\(text)")
            #expect(try eventually(timeout: 5) { try h.send(send)["warned_at"] != nil })
            #expect(try h.send(send)["warning_rule"] == "sends_coupon_published")

            // Changes that leave the same problem do not warn again.
            try h.db.connection.execute("UPDATE coupond.coupons SET receive_limit = 2000 WHERE id = \(coupon)")
            Thread.sleep(forTimeInterval: 1.5)
            #expect(try Self.warnings(h).count == 1)

            // A new problem does: published again, but ending before the send's hour.
            try h.db.connection.execute(
                """
                UPDATE coupond.coupons SET status = 'published', ends_at = '2026-12-01T13:00:00Z' WHERE id = \(coupon)
                """
            )
            #expect(try eventually(timeout: 10) { try Self.warnings(h).count == 2 })
            #expect(try eventually(timeout: 5) { try h.send(send)["warning_rule"] == "sends_coupon_not_expired" })

            let status = try runProduct(
                "coupond",
                ["status", "\(send)", "--config", try h.configuration().path],
                environment: h.db.environment.mapValues { $0 }
            )
            let warned = status.stdout.split(separator: "\n").first { $0.hasPrefix("Warned ") } ?? ""
            #expect(
                warned.hasSuffix(
                    ": coupon \(coupon) expired at 2026-12-01 13:00 UTC; cancel until 2026-12-01 12:00 +00:00"
                ),
                "\(status.stdout)"
            )
        }
    }

    @Test func aCouponEndingBeforeTheHourWarnsAsSoonAsTheSendIsScheduled() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            var ending = Fixtures.Coupon()
            ending.endsAt = utc(2026, 12, 1, 13)
            let coupon = try h.fixtures.coupon(shop: h.shop, ending)
            // Accepted: the coupon is valid now (rule 2); at 14:00 it will not be (rule 4).
            let send = try h.schedule(
                group: try h.fixtures.group(shop: h.shop, members: 2),
                coupon: coupon,
                hoursAhead: 4
            )
            #expect(try eventually(timeout: 10) { try Self.warnings(h).count == 1 }, "\(daemon.stderr.suffix(1500))")
            #expect(try eventually(timeout: 5) { try h.send(send)["warned_at"] != nil })
        }
    }

    @Test func aSendPastItsCancelDeadlineIsNotWarnedAndFailsAtItsHour() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            let coupon = try h.fixtures.coupon(shop: h.shop)
            // Exactly 2 hours ahead: it can no longer be cancelled, so a warning would only be noise.
            let send = try h.schedule(group: try h.fixtures.group(shop: h.shop, members: 2), coupon: coupon)
            try h.db.connection.execute("UPDATE coupond.coupons SET status = 'unpublished' WHERE id = \(coupon)")
            Thread.sleep(forTimeInterval: 2)
            #expect(try Self.warnings(h).isEmpty)
            #expect(try h.send(send)["warning_rule"] == nil)
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "failed")
            #expect(try h.send(send)["failure_reason"] == "invalid_coupon")
        }
    }
}

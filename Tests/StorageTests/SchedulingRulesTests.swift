import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Rules 1 and 2 of MISSION.md, as any writer of `coupond.sends` meets them.
@Suite struct SchedulingRulesTests {
    static let now = utc(2026, 12, 1, 10)

    /// Inserts a send the raw way another system would, returning the refusal's rule or `nil` when accepted.
    static func insert(
        _ db: TestDatabase,
        shop: Int64,
        group: Int64,
        coupon: Int64,
        at: Date,
        email: Bool = true,
        sms: Bool = false
    ) throws -> String? {
        do {
            try db.connection.execute(
                """
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at)
                VALUES (\(shop), \(group), \(coupon), \(email), \(sms), \(at))
                """
            )
            return nil
        } catch let error as PostgresError {
            #expect(error.message.isEmpty == false)
            #expect(error.hint?.isEmpty == false, "refusal \(error.constraint ?? "?") should carry a hint")
            return error.constraint ?? "sqlstate \(error.sqlState?.code ?? "?")"
        }
    }

    struct Setup {
        var shop: Int64
        var group: Int64
        var coupon: Int64
    }

    static func setup(
        _ db: TestDatabase,
        timeZone: String = "UTC",
        members: Int = 10,
        coupon: Fixtures.Coupon = .init()
    ) throws -> Setup {
        let fixtures = Fixtures(db.connection)
        try fixtures.setClock(now)
        let shop = try fixtures.shop(timeZone: timeZone)
        return Setup(
            shop: shop,
            group: try fixtures.group(shop: shop, members: members),
            coupon: try fixtures.coupon(shop: shop, coupon)
        )
    }

    @Test func exactlyTwoHoursAheadOnTheHourIsAccepted() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 12)) == nil
            )
            let row = try db.connection.queryRow("SELECT status, created_at FROM coupond.sends")
            #expect(try row?.decode("status", as: String.self) == "not_started")
            #expect(try row?.decode("created_at", as: Date.self) == Self.now)
        }
    }

    @Test(arguments: ["infinity", "-infinity"])
    func aTimeThatIsNotATimeIsRefused(time: String) throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            let refusal = #expect(throws: PostgresError.self) {
                try db.connection.execute(
                    """
                    INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at)
                    VALUES (\(s.shop), \(s.group), \(s.coupon), true, \(time)::timestamptz)
                    """
                )
            }
            #expect(refusal?.constraint == "sends_scheduled_finite")
        }
    }

    @Test func aSendMoreThanAYearAheadIsRefusedAndOneWithinAYearAccepted() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            let farAway = try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(9999, 1, 1, 10))
            #expect(farAway == "sends_scheduled_within_a_year")
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2027, 12, 1, 11))
                    == "sends_scheduled_within_a_year"
            )
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2027, 12, 1, 10)) == nil
            )
        }
    }

    @Test(arguments: ["localtime", "Factory", "posixrules", "posix/Asia/Kolkata", "right/UTC", "Mars/Olympus"])
    func aNameThatIsNotAPlaceIsRefusedAsAShopTimeZone(zone: String) throws {
        try TestDatabase.with { db in
            let refusal = #expect(throws: PostgresError.self) {
                try db.connection.execute(
                    """
                    INSERT INTO coupond.shops (name, login_url, merchant_email, time_zone)
                    VALUES ('Shop', 'https://shop.example/login', 'owner@shop.example', \(zone))
                    """
                )
            }
            #expect(refusal?.constraint == "shops_time_zone_known")
            #expect(refusal?.hint?.contains("Asia/Kolkata") == true)
        }
    }

    @Test func oneSecondShortOfTwoHoursIsRefused() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            try Fixtures(db.connection).setClock(utc(2026, 12, 1, 10, 0, 1))
            let rule = try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 12))
            #expect(rule == "sends_scheduled_2h_ahead")
        }
    }

    @Test func aMinutePastTheHourIsRefused() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            let rule = try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 15, 1))
            #expect(rule == "sends_scheduled_on_the_hour")
            let second = try Self.insert(
                db,
                shop: s.shop,
                group: s.group,
                coupon: s.coupon,
                at: utc(2026, 12, 1, 15, 0, 1)
            )
            #expect(second == "sends_scheduled_on_the_hour")
        }
    }

    @Test func theHourIsTheShopsOwnNotUTC() throws {
        try TestDatabase.with { db in
            // Asia/Kolkata is UTC+5:30: its whole hours fall on half past in UTC.
            let s = try Self.setup(db, timeZone: "Asia/Kolkata")
            let utcHour = try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 14))
            #expect(utcHour == "sends_scheduled_on_the_hour")
            let shopHour = try Self.insert(
                db,
                shop: s.shop,
                group: s.group,
                coupon: s.coupon,
                at: utc(2026, 12, 1, 14, 30)
            )
            #expect(shopHour == nil)
        }
    }

    @Test func aShopLocalTimeIsReadInTheShopsZone() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db, timeZone: "America/New_York")
            let send = try SendStore(connection: db.connection).schedule(
                SendRequest(
                    shopID: s.shop,
                    groupID: s.group,
                    couponID: s.coupon,
                    email: true,
                    sms: true,
                    time: .shopLocal("2026-12-01 09:00")
                )
            )
            // 09:00 in New York in December is 14:00 UTC.
            #expect(send.scheduledAt == utc(2026, 12, 1, 14))
            #expect(send.status == .notStarted)
            #expect(send.statusLabel == "Not started")
        }
    }

    @Test func atLeastOneChannelIsRequired() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            let rule = try Self.insert(
                db,
                shop: s.shop,
                group: s.group,
                coupon: s.coupon,
                at: utc(2026, 12, 1, 12),
                email: false,
                sms: false
            )
            #expect(rule == "sends_channel_required")
        }
    }

    @Test func groupAndCouponMustBelongToTheShop() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            let fixtures = Fixtures(db.connection)
            let otherShop = try fixtures.shop(name: "Other")
            let otherGroup = try fixtures.group(shop: otherShop, members: 1)
            let otherCoupon = try fixtures.coupon(shop: otherShop)
            let at = utc(2026, 12, 1, 12)
            #expect(
                try Self.insert(db, shop: s.shop, group: otherGroup, coupon: s.coupon, at: at)
                    == "sends_group_same_shop"
            )
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: otherCoupon, at: at)
                    == "sends_coupon_same_shop"
            )
            #expect(try Self.insert(db, shop: s.shop, group: 999_999, coupon: s.coupon, at: at) == "sends_group_exists")
            #expect(try Self.insert(db, shop: s.shop, group: s.group, coupon: 999_999, at: at) == "sends_coupon_exists")
            #expect(try Self.insert(db, shop: 999_999, group: s.group, coupon: s.coupon, at: at) == "sends_shop_exists")
        }
    }

    @Test(
        arguments: [
            ("code", "published", "all_customers", "sends_coupon_get_link"),
            ("get_coupon_link", "unpublished", "all_customers", "sends_coupon_published"),
            ("get_coupon_link", "deleted", "all_customers", "sends_coupon_published"),
            ("get_coupon_link", "published", "groups", "sends_coupon_all_customers"),
        ]
    )
    func ineligibleCouponsAreRefused(kind: String, status: String, target: String, expected: String) throws {
        try TestDatabase.with { db in
            var coupon = Fixtures.Coupon()
            coupon.kind = kind
            coupon.status = status
            coupon.target = target
            let s = try Self.setup(db, coupon: coupon)
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 12))
                    == expected
            )
        }
    }

    @Test func anExpiredCouponIsRefusedAndANotYetStartedOneAccepted() throws {
        try TestDatabase.with { db in
            var expired = Fixtures.Coupon()
            expired.endsAt = Self.now
            let s = try Self.setup(db, coupon: expired)
            let at = utc(2026, 12, 1, 12)
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: at)
                    == "sends_coupon_not_expired"
            )

            var lastSecond = Fixtures.Coupon()
            lastSecond.endsAt = Self.now.addingTimeInterval(1)
            let stillValid = try Fixtures(db.connection).coupon(shop: s.shop, lastSecond)
            #expect(try Self.insert(db, shop: s.shop, group: s.group, coupon: stillValid, at: at) == nil)

            var future = Fixtures.Coupon()
            future.startsAt = utc(2026, 12, 5, 0)
            let notYetStarted = try Fixtures(db.connection).coupon(shop: s.shop, future)
            #expect(try Self.insert(db, shop: s.shop, group: s.group, coupon: notYetStarted, at: at) == nil)
        }
    }

    @Test func remainingReceiveLimitMustExceedTheGroupSize() throws {
        try TestDatabase.with { db in
            var coupon = Fixtures.Coupon()
            coupon.receiveLimit = 10
            let s = try Self.setup(db, members: 10, coupon: coupon)
            let fixtures = Fixtures(db.connection)
            let at = utc(2026, 12, 1, 12)
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: at)
                    == "sends_coupon_remaining_limit"
            )

            coupon.receiveLimit = 12
            coupon.claimedCount = 2
            let claimed = try fixtures.coupon(shop: s.shop, coupon)
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: claimed, at: at)
                    == "sends_coupon_remaining_limit"
            )

            coupon.receiveLimit = 11
            coupon.claimedCount = 0
            let enough = try fixtures.coupon(shop: s.shop, coupon)
            #expect(try Self.insert(db, shop: s.shop, group: s.group, coupon: enough, at: at) == nil)

            coupon.receiveLimit = nil
            let unlimited = try fixtures.coupon(shop: s.shop, coupon)
            #expect(try Self.insert(db, shop: s.shop, group: s.group, coupon: unlimited, at: at) == nil)
        }
    }

    @Test func removedMembersDoNotCountTowardsTheLimit() throws {
        try TestDatabase.with { db in
            var coupon = Fixtures.Coupon()
            coupon.receiveLimit = 10
            let s = try Self.setup(db, members: 10, coupon: coupon)
            try db.connection.execute(
                """
                UPDATE coupond.group_members SET removed_at = added_at
                WHERE group_id = \(s.group) AND customer_id = (SELECT min(customer_id) FROM coupond.group_members)
                """
            )
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 12)) == nil
            )
        }
    }

    @Test func aWriterCannotInsertAFinishedSendOrForgeEngineColumns() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            let at = utc(2026, 12, 1, 12)
            #expect(throws: PostgresError.self) {
                try db.connection.execute(
                    """
                    INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at, status)
                    VALUES (\(s.shop), \(s.group), \(s.coupon), true, \(at), 'done')
                    """
                )
            }
            let row = try db.connection.queryRow(
                """
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at, sent_count, created_at)
                VALUES (\(s.shop), \(s.group), \(s.coupon), true, \(at), 500, '2000-01-01')
                RETURNING sent_count, created_at
                """
            )
            #expect(try row?.decode("sent_count", as: Int.self) == 0)
            #expect(try row?.decode("created_at", as: Date.self) == Self.now)
        }
    }

    @Test func aScheduledSendCannotBeRewritten() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db)
            #expect(
                try Self.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 12)) == nil
            )
            let error = #expect(throws: PostgresError.self) {
                try db.connection.execute("UPDATE coupond.sends SET scheduled_at = scheduled_at - interval '1 hour'")
            }
            #expect(error?.constraint == "sends_immutable")
            let backwards = #expect(throws: PostgresError.self) {
                try db.connection.execute("UPDATE coupond.sends SET status = 'done'")
            }
            #expect(backwards?.constraint == "sends_status_forward")
        }
    }
}

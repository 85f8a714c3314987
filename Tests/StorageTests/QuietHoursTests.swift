import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// A shop's quiet hours: no send is scheduled inside them, by any writer.
@Suite struct QuietHoursTests {
    typealias Rules = SchedulingRulesTests

    /// A shop in Asia/Kolkata (UTC+5:30) with quiet hours from `start` to `end`.
    static func setup(_ db: TestDatabase, start: String, end: String) throws -> SchedulingRulesTests.Setup {
        let s = try Rules.setup(db, timeZone: "Asia/Kolkata")
        try db.connection.execute(
            "UPDATE coupond.shops SET quiet_hours_start = \(start)::time, quiet_hours_end = \(end)::time WHERE id = \(s.shop)"
        )
        return s
    }

    /// The instant of `hour`:00 shop time on 2026-12-02 in Asia/Kolkata.
    static func shopHour(_ hour: Int) -> Date {
        utc(2026, 12, 2, hour).addingTimeInterval(-5.5 * 3600)
    }

    @Test func aSendInsideOvernightQuietHoursIsRefusedNamingThem() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db, start: "21:00", end: "09:00")
            for hour in [21, 23, 0, 3, 8] {
                let refusal = try Rules.insert(
                    db,
                    shop: s.shop,
                    group: s.group,
                    coupon: s.coupon,
                    at: Self.shopHour(hour)
                )
                #expect(refusal == "sends_outside_quiet_hours", "at \(hour):00")
            }
            do {
                try db.connection.execute(
                    """
                    INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at)
                    VALUES (\(s.shop), \(s.group), \(s.coupon), true, \(Self.shopHour(22)))
                    """
                )
                Issue.record("a send at 22:00 was accepted")
            } catch let error as PostgresError {
                #expect(
                    error.message == "2026-12-02 22:00 (Asia/Kolkata) is within the shop's quiet hours, 21:00 to 09:00"
                )
            }
        }
    }

    @Test func theHourQuietHoursEndIsAllowedAndSoIsTheLastHourBeforeThey() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db, start: "21:00", end: "09:00")
            #expect(try Rules.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: Self.shopHour(9)) == nil)
            #expect(try Rules.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: Self.shopHour(20)) == nil)
        }
    }

    @Test func quietHoursWithinOneDayRefuseOnlyThatSpan() throws {
        try TestDatabase.with { db in
            let s = try Self.setup(db, start: "12:00", end: "14:00")
            #expect(try Rules.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: Self.shopHour(13)) != nil)
            #expect(try Rules.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: Self.shopHour(14)) == nil)
            #expect(try Rules.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: Self.shopHour(23)) == nil)
        }
    }

    @Test func aShopWithoutQuietHoursSendsAtAnyHour() throws {
        try TestDatabase.with { db in
            let s = try Rules.setup(db, timeZone: "Asia/Kolkata")
            #expect(try Rules.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: Self.shopHour(3)) == nil)
        }
    }

    @Test func halfOfAQuietHoursPairIsRefused() throws {
        try TestDatabase.with { db in
            let s = try Rules.setup(db)
            #expect(throws: PostgresError.self) {
                try db.connection.execute(
                    "UPDATE coupond.shops SET quiet_hours_start = '21:00' WHERE id = \(s.shop)"
                )
            }
        }
    }
}

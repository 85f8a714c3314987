import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Rules the database holds every writer to, the owner included: status moves at the hour, deletes, the statement's
/// clock, local hours that do not exist or exist twice, and one definition of "reachable".
@Suite struct TrustBoundaryRulesTests {
    static func constraint(of body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as PostgresError {
            return error.constraint ?? "sqlstate \(error.sqlState?.code ?? "?")"
        } catch let refusal as SendRefusal {
            return refusal.rule
        } catch {
            return "\(error)"
        }
    }

    /// One send scheduled for 2026-12-03 09:00 UTC, with the rule clock at 2026-12-01 10:00.
    static func scheduleOneSend(_ db: TestDatabase) throws {
        let s = try SchedulingRulesTests.setup(db)
        let refusal = try SchedulingRulesTests.insert(
            db,
            shop: s.shop,
            group: s.group,
            coupon: s.coupon,
            at: utc(2026, 12, 3, 9)
        )
        #expect(refusal == nil)
    }

    @Test func aSendCannotBeStartedOrFailedByHandBeforeItsHour() throws {
        try TestDatabase.with { db in
            try Self.scheduleOneSend(db)
            for change in ["status = 'sending'", "status = 'failed', failure_reason = 'invalid_coupon'"] {
                #expect(
                    Self.constraint {
                        try db.connection.execute(PostgresQuery(unsafeSQL: "UPDATE coupond.sends SET \(change)"))
                    }
                        == "sends_start_when_due",
                    "\(change)"
                )
            }
            try Fixtures(db.connection).setClock(utc(2026, 12, 3, 9))
            #expect(Self.constraint { try db.connection.execute("UPDATE coupond.sends SET status = 'sending'") } == nil)
        }
    }

    @Test func onlyACancelledSendCanBeDeleted() throws {
        try TestDatabase.with { db in
            try Self.scheduleOneSend(db)
            #expect(
                Self.constraint { try db.connection.execute("DELETE FROM coupond.sends") }
                    == "sends_cancel_before_delete"
            )
            try db.connection.execute("SELECT coupond.cancel_send(id) FROM coupond.sends")
            #expect(try db.connection.execute("DELETE FROM coupond.sends") == 1)
        }
    }

    @Test func theRuleClockIsTheStatementsTimeNotTheTransactionsStart() throws {
        try TestDatabase.with { db in
            let s = try SchedulingRulesTests.setup(db)
            try db.connection.execute("DELETE FROM coupond.clock_override")
            let hour: Date = try db.connection.queryRow(
                "SELECT date_trunc('hour', now()) + interval '4 hours' AS hour"
            )!.decode("hour")
            #expect(
                try SchedulingRulesTests.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: hour) == nil
            )
            // The rule clock stands one second before the cancel cut-off.
            try db.connection.execute(
                """
                INSERT INTO coupond.clock_override (shift)
                SELECT (\(hour)::timestamptz - interval '2 hours' - interval '1 second') - now()
                """
            )
            let other = try db.connect()
            defer { other.close() }
            try other.execute("BEGIN")
            try other.execute("SELECT coupond.clock_now()")
            Thread.sleep(forTimeInterval: 1.5)
            let refusal = Self.constraint { try other.execute("SELECT coupond.cancel_send(id) FROM coupond.sends") }
            _ = try? other.execute("ROLLBACK")
            #expect(refusal == "cancel_until_2h_before")
        }
    }

    @Test func aLocalHourTheClocksSkipIsRefusedWithTheNearestHoursThatExist() throws {
        try TestDatabase.with { db in
            let s = try SchedulingRulesTests.setup(db, timeZone: "America/New_York")
            let refusal = #expect(throws: SendRefusal.self) {
                _ = try SendStore(connection: db.connection).schedule(
                    SendRequest(
                        shopID: s.shop,
                        groupID: s.group,
                        couponID: s.coupon,
                        email: true,
                        sms: false,
                        time: .shopLocal("2027-03-14 02:00")
                    )
                )
            }
            #expect(refusal?.rule == "sends_local_time_exists")
            #expect(refusal?.message.contains("2027-03-14 02:00 does not exist in America/New_York") == true)
            #expect(refusal?.hint?.contains("2027-03-14 01:00 or 2027-03-14 03:00") == true, "\(refusal?.hint ?? "")")
            #expect(try db.connection.queryRow("SELECT count(*)::int AS n FROM coupond.sends")?.decode("n") == 0)
        }
    }

    @Test func aLocalHourTheClocksPassTwiceIsRefusedHoweverItIsWritten() throws {
        try TestDatabase.with { db in
            let s = try SchedulingRulesTests.setup(db, timeZone: "America/New_York")
            let store = SendStore(connection: db.connection)
            func schedule(_ time: ScheduledTime) -> String? {
                Self.constraint {
                    _ = try store.schedule(
                        SendRequest(
                            shopID: s.shop,
                            groupID: s.group,
                            couponID: s.coupon,
                            email: true,
                            sms: false,
                            time: time
                        )
                    )
                }
            }
            #expect(schedule(.shopLocal("2027-11-07 01:00")) == "sends_local_time_unambiguous")
            // 05:00 and 06:00 UTC are both 01:00 in New York that day.
            #expect(schedule(.instant(utc(2027, 11, 7, 5))) == "sends_local_time_unambiguous")
            #expect(schedule(.instant(utc(2027, 11, 7, 6))) == "sends_local_time_unambiguous")
            #expect(schedule(.shopLocal("2027-11-07 02:00")) == nil)
            #expect(schedule(.shopLocal("2027-11-07 00:00")) == nil)
        }
    }

    @Test func thePreviewsSMSEstimateCountsOnlyTheMembersTheSendWouldReach() throws {
        try TestDatabase.with { db in
            let s = try SchedulingRulesTests.setup(db, members: 5)
            try db.connection.execute(
                """
                UPDATE coupond.customers SET mobile = '555-0100' WHERE id = (SELECT min(id) FROM coupond.customers);
                UPDATE coupond.customers SET sms_consent = false WHERE id = (SELECT max(id) FROM coupond.customers);
                """
            )
            let preview = try PreviewSource.load(
                on: db.connection,
                shopID: s.shop,
                groupID: s.group,
                couponID: s.coupon,
                customerID: nil
            )
            #expect(preview.memberCount == 5)
            #expect(preview.smsReachableCount == 3)
        }
    }
}

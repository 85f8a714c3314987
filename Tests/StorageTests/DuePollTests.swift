import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// The scheduler's poll: it returns only sends that can start now, and reads them along indexes.
@Suite struct DuePollTests {
    /// A busy group (one send sending under a live lease, 30 more due behind it) and a free group with one due send,
    /// scheduled after all of them.
    struct BusyAndFree {
        var holding: Int64
        var waiting: [Int64]
        var free: Int64
    }

    static func busyAndFree(_ db: TestDatabase) throws -> BusyAndFree {
        let fixtures = Fixtures(db.connection)
        try fixtures.setClock(utc(2026, 12, 1, 8))
        let shop = try fixtures.shop()
        let busy = try fixtures.group(shop: shop, members: 2)
        let free = try fixtures.group(shop: shop, members: 2, name: "Free")
        let coupon = try fixtures.coupon(shop: shop)
        func schedule(_ group: Int64, _ hour: Int) throws -> Int64 {
            try db.connection.queryRow(
                """
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at)
                VALUES (\(shop), \(group), \(coupon), true, \(utc(2026, 12, 1, hour))) RETURNING id
                """
            )!.decode("id")
        }
        let holding = try schedule(busy, 10)
        let waiting = try (0..<30).map { _ in try schedule(busy, 11) }
        let freeSend = try schedule(free, 12)
        try fixtures.setClock(utc(2026, 12, 1, 12))
        try db.connection.execute(
            """
            UPDATE coupond.sends SET status = 'sending', lease_owner = 'frozen#1',
                lease_expires_at = now() + interval '1 hour'
            WHERE id = \(holding)
            """
        )
        return BusyAndFree(holding: holding, waiting: waiting, free: freeSend)
    }

    @Test func thirtySendsWaitingForABusyGroupDoNotHideTheDueSendOfAFreeGroup() throws {
        try TestDatabase.with { db in
            let sends = try Self.busyAndFree(db)
            let store = EngineStore(connection: db.connection, owner: "me", leaseSeconds: 30)
            #expect(try store.dueSendIDs(limit: 16) == [sends.free])
            #expect(try store.claim(sendID: sends.free) != nil)
            #expect(try store.claim(sendID: sends.waiting[0]) == nil)
        }
    }

    @Test func aSendWhoseHolderStoppedRenewingIsDueAgainAndTheGroupStaysWithIt() throws {
        try TestDatabase.with { db in
            let sends = try Self.busyAndFree(db)
            let store = EngineStore(connection: db.connection, owner: "me", leaseSeconds: 30)
            try db.connection.execute(
                "UPDATE coupond.sends SET lease_expires_at = now() - interval '1 second' WHERE id = \(sends.holding)"
            )
            #expect(try store.dueSendIDs(limit: 16) == [sends.holding, sends.free])
            let taken = try store.claim(sendID: sends.holding)
            #expect(taken?.status == .sending)
            #expect(taken?.leaseHolder == "me#1")
            // The old holder's writes are fenced off from then on.
            let old = EngineStore(connection: db.connection, owner: "frozen#1", leaseSeconds: 30)
            #expect(throws: LeaseLost.self) { try old.renewLease(sendID: sends.holding) }
        }
    }

    @Test func theNextWakeIsTheNextDueSendOrLeaseEndNotASendWaitingForItsGroup() throws {
        try TestDatabase.with { db in
            _ = try Self.busyAndFree(db)
            let store = EngineStore(connection: db.connection, owner: "me", leaseSeconds: 30)
            // The holder's lease ends in an hour; the waiting sends are due already and must not make it 0.
            let seconds = try #require(try store.secondsUntilNextChange())
            #expect(seconds > 3500 && seconds <= 3600, "\(seconds)")
        }
    }

    @Test func theDuePollAndTheNextWakeStayIndexScansAtAHundredThousandScheduledSends() throws {
        try TestDatabase.with { db in
            _ = try Self.busyAndFree(db)
            // Written below the rules (replica mode skips triggers): 100,000 sends ahead and 100,000 done.
            try db.connection.execute(
                """
                SET session_replication_role = replica;
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at, status)
                SELECT 1, g % 1000 + 100, 1, true, '2026-12-02 00:00Z'::timestamptz + (g % 5000) * interval '1 hour',
                       'not_started'
                FROM generate_series(1, 100000) AS g;
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at, status, notice_status,
                                           sent_count, recipient_count)
                SELECT 1, g % 1000 + 100, 1, true, '2026-01-01 00:00Z'::timestamptz + (g % 5000) * interval '1 hour',
                       'done', 'sent', 0, 0
                FROM generate_series(1, 100000) AS g;
                SET session_replication_role = DEFAULT;
                ANALYZE coupond.sends;
                """
            )
            for query in [EngineStore.dueQuery(limit: 16), EngineStore.nextChangeQuery] {
                let plan = try db.connection.query("EXPLAIN \(subquery: query)").compactMap { $0["QUERY PLAN"] }
                    .joined(separator: "\n")
                #expect(!plan.contains("Seq Scan"), "\(plan)")
                #expect(plan.contains("sends_due"), "\(plan)")
            }
        }
    }
}

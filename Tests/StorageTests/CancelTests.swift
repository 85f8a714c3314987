import Dispatch
import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Rule 11: cancel only a not started send, and only until 2 hours before its time.
@Suite struct CancelTests {
    static let scheduled = utc(2026, 12, 1, 18)

    static func scheduledSend(_ db: TestDatabase) throws -> Int64 {
        let fixtures = Fixtures(db.connection)
        try fixtures.setClock(utc(2026, 12, 1, 10))
        let shop = try fixtures.shop()
        let send = try SendStore(connection: db.connection).schedule(
            SendRequest(
                shopID: shop,
                groupID: try fixtures.group(shop: shop, members: 3),
                couponID: try fixtures.coupon(shop: shop),
                email: true,
                sms: false,
                time: .instant(scheduled)
            )
        )
        return send.sendID
    }

    @Test func cancelAtExactlyTwoHoursBeforeSucceeds() throws {
        try TestDatabase.with { db in
            let id = try Self.scheduledSend(db)
            try Fixtures(db.connection).setClock(Self.scheduled.addingTimeInterval(-7200))
            let send = try SendStore(connection: db.connection).cancel(sendID: id)
            #expect(send.status == .cancelled)
            #expect(send.statusLabel == "Cancelled")
            #expect(send.finishedAt == Self.scheduled.addingTimeInterval(-7200))
        }
    }

    @Test func cancelOneSecondLaterIsRefused() throws {
        try TestDatabase.with { db in
            let id = try Self.scheduledSend(db)
            try Fixtures(db.connection).setClock(Self.scheduled.addingTimeInterval(-7199))
            let refusal = #expect(throws: SendRefusal.self) {
                try SendStore(connection: db.connection).cancel(sendID: id)
            }
            #expect(refusal?.rule == "cancel_until_2h_before")
            // A raw UPDATE is held to the same rule.
            let raw = #expect(throws: PostgresError.self) {
                try db.connection.execute("UPDATE coupond.sends SET status = 'cancelled' WHERE id = \(id)")
            }
            #expect(raw?.constraint == "cancel_until_2h_before")
            #expect(try SendStore(connection: db.connection).send(id: id)?.status == .notStarted)
        }
    }

    @Test func cancelOfAStartedOrMissingSendIsRefused() throws {
        try TestDatabase.with { db in
            let id = try Self.scheduledSend(db)
            let store = SendStore(connection: db.connection)
            let missing = #expect(throws: SendRefusal.self) { try store.cancel(sendID: id + 1000) }
            #expect(missing?.rule == "cancel_send_exists")
            #expect(missing?.sqlState == .noDataFound)
            try Fixtures(db.connection).setClock(Self.scheduled)
            try db.connection.execute("UPDATE coupond.sends SET status = 'sending' WHERE id = \(id)")
            let started = #expect(throws: SendRefusal.self) { try store.cancel(sendID: id) }
            #expect(started?.rule == "cancel_only_not_started")
            #expect(started?.message.contains("already sending") == true)
        }
    }

    @Test func concurrentCancelsLetExactlyOneWin() throws {
        try TestDatabase.with { db in
            let id = try Self.scheduledSend(db)
            let racers = 8
            let outcomes = Outcomes()
            let databaseName = db.name
            // Connections are opened first so that the cancels, not the connects, overlap.
            let connections = try (0..<racers).map { _ in try TestDatabase.connect(to: databaseName) }
            let handles = ConnectionList(connections)
            defer { connections.forEach { $0.close() } }
            concurrently(racers) { index in
                do {
                    _ = try SendStore(connection: handles.take(index)).cancel(sendID: id)
                    outcomes.add("cancelled")
                } catch let refusal as SendRefusal {
                    outcomes.add(refusal.rule)
                } catch {
                    outcomes.add("\(error)")
                }
            }
            #expect(outcomes.values.filter { $0 == "cancelled" }.count == 1)
            #expect(outcomes.values.filter { $0 == "cancel_only_not_started" }.count == racers - 1)
        }
    }
}

import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// How the engine reads and writes a large send's recipients: pages along an index, outcomes without index writes.
@Suite struct RecipientLedgerTests {
    /// A send of `members` customers, started: its recipients written and its planner statistics fresh.
    static func startedSend(_ db: TestDatabase, members: Int, email: Bool = true) throws -> (EngineStore, Int64) {
        let fixtures = Fixtures(db.connection)
        try fixtures.setClock(utc(2026, 12, 1, 10))
        let shop = try fixtures.shop()
        let group = try fixtures.group(shop: shop, members: members)
        var coupon = Fixtures.Coupon()
        coupon.receiveLimit = nil
        let couponID = try fixtures.coupon(shop: shop, coupon)
        let send = try SendStore(connection: db.connection).schedule(
            SendRequest(
                shopID: shop,
                groupID: group,
                couponID: couponID,
                email: email,
                sms: !email,
                time: .instant(utc(2026, 12, 1, 13))
            )
        )
        try fixtures.setClock(utc(2026, 12, 1, 13))
        let store = EngineStore(connection: db.connection, owner: "ledger-test", leaseSeconds: 30)
        let claimed = try #require(try store.claim(sendID: send.sendID))
        _ = try store.start(claimed)
        try store.analyzeRecipients()
        return (store, send.sendID)
    }

    @Test func pendingPagesAreReadAlongThePrimaryKeyWithoutSortingTheRest() throws {
        try TestDatabase.with { db in
            let (store, send) = try Self.startedSend(db, members: 5000)
            let plan = try store.pendingRecipientsPlan(sendID: send, after: 2500, limit: 500)
            #expect(plan.contains("Index Scan using send_recipients_pkey"), "\(plan)")
            #expect(!plan.contains("Sort"), "\(plan)")
            let page = try store.pendingRecipients(sendID: send, after: 2500, limit: 500)
            #expect(page.count == 500)
            #expect(page.map(\.customerID) == page.map(\.customerID).sorted())
            #expect(page.allSatisfy { $0.name != nil && $0.emailPending })
        }
    }

    @Test func recordingOutcomesIsAHotUpdateThatWritesNoIndex() throws {
        try TestDatabase.with { db in
            let (store, send) = try Self.startedSend(db, members: 2000)
            let recipients = try store.pendingRecipients(sendID: send, after: 0, limit: 2000)
            for page in stride(from: 0, to: recipients.count, by: 500) {
                let outcomes = recipients[page..<page + 500].map { recipient in
                    var outcome = RecipientOutcome(customerID: recipient.customerID)
                    outcome.emailStatus = .sent
                    outcome.emailMessageID = "msg-\(recipient.customerID)"
                    outcome.emailAttempts = 1
                    outcome.tokenHashHex = String(format: "%064x", recipient.customerID)
                    return outcome
                }
                #expect(try store.record(sendID: send, outcomes: Array(outcomes)).sent == 500)
            }
            // Statistics reach pg_stat_user_tables when the writing session reports them, within a second or so.
            var counts: (updated: Int, hot: Int) = (0, 0)
            let deadline = Date().addingTimeInterval(10)
            while counts.updated < 2000, Date() < deadline {
                Thread.sleep(forTimeInterval: 0.2)
                let row = try db.connection.queryRow(
                    """
                    SELECT pg_stat_clear_snapshot(), n_tup_upd AS updated, n_tup_hot_upd AS hot
                    FROM pg_stat_user_tables WHERE relid = 'coupond.send_recipients'::regclass
                    """
                )
                counts = (try row?.decode("updated") ?? 0, try row?.decode("hot") ?? 0)
            }
            #expect(counts.updated == 2000)
            #expect(counts.hot == counts.updated, "\(counts.hot) of \(counts.updated) updates were HOT")
        }
    }

    @Test func aStartedSendCannotBeDeletedFromUnderItsRecipients() throws {
        try TestDatabase.with { db in
            let (_, send) = try Self.startedSend(db, members: 3)
            let error = #expect(throws: PostgresError.self) {
                try db.connection.execute("DELETE FROM coupond.sends WHERE id = \(send)")
            }
            #expect(error?.constraint == "sends_started_kept")
            let rows: Int? = try db.connection.queryRow(
                "SELECT count(*) AS n FROM coupond.send_recipients WHERE send_id = \(send)"
            )?.decode("n")
            #expect(rows == 3)
        }
    }
}

import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// How the engine writes and reads a large send's recipients: the list part by part, pages along an index, outcomes
/// without index writes.
@Suite struct RecipientLedgerTests {
    /// A send of `members` customers, started, not a recipient written yet.
    static func claimedAndStarted(
        _ db: TestDatabase,
        members: Int,
        email: Bool = true
    ) throws -> (EngineStore, RecipientStore, ClaimedSend) {
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
        let instance = EngineStore(connection: db.connection, owner: "ledger-test", leaseSeconds: 30)
        let claimed = try #require(try instance.claim(sendID: send.sendID))
        let store = instance.holding(claimed)
        #expect(try store.start(claimed) == .sending(recipients: members))
        return (store, RecipientStore(connection: db.connection, owner: claimed.leaseHolder), claimed)
    }

    /// A send of `members` customers, started: its recipients written and its planner statistics fresh.
    static func startedSend(
        _ db: TestDatabase,
        members: Int,
        email: Bool = true
    ) throws -> (EngineStore, RecipientStore, Int64) {
        let (engine, recipients, send) = try claimedAndStarted(db, members: members, email: email)
        var after: Int64? = RecipientStore.beforeEveryCustomer
        while let from = after {
            after = try recipients.writeRecipients(of: send, after: from, limit: 1000).writtenUpTo
        }
        try recipients.analyzeRecipients()
        return (engine, recipients, send.id)
    }

    @Test func theListIsWrittenPartByPartInCustomerOrderUntilItIsComplete() throws {
        try TestDatabase.with { db in
            let (_, recipients, send) = try Self.claimedAndStarted(db, members: 1000)
            #expect(try recipients.writtenUpTo(sendID: send.id) == RecipientStore.beforeEveryCustomer)
            var parts: [[Int64]] = []
            var after: Int64? = RecipientStore.beforeEveryCustomer
            while let from = after {
                let written = try recipients.writeRecipients(of: send, after: from, limit: 300)
                parts.append(written.pending.map(\.customerID))
                after = written.writtenUpTo
                #expect(try recipients.writtenUpTo(sendID: send.id) == after)
            }
            #expect(parts.map(\.count) == [300, 300, 300, 100])
            let ids = parts.flatMap { $0 }
            #expect(ids == ids.sorted() && Set(ids).count == 1000)
            let members: [Int64] = try db.connection.query(
                "SELECT customer_id FROM coupond.group_members WHERE group_id = \(send.groupID) ORDER BY customer_id"
            ).map { try $0.decode("customer_id") }
            #expect(ids == members)
        }
    }

    @Test func unreachableMembersAreFailedAsTheirPartIsWrittenAndNotHandedOut() throws {
        try TestDatabase.with { db in
            let (_, recipients, send) = try Self.claimedAndStarted(db, members: 10)
            try db.connection.execute(
                """
                UPDATE coupond.customers SET email = NULL
                WHERE id IN (SELECT customer_id FROM coupond.group_members WHERE group_id = \(send.groupID)
                             ORDER BY customer_id LIMIT 3)
                """
            )
            let written = try recipients.writeRecipients(of: send, after: RecipientStore.beforeEveryCustomer, limit: 20)
            #expect(written.pending.count == 7)
            #expect(written.writtenUpTo == nil)
            let row = try db.connection.queryRow("SELECT failed_count FROM coupond.sends WHERE id = \(send.id)")
            #expect(try row?.decode("failed_count", as: Int.self) == 3)
            let reasons = try db.connection.query(
                "SELECT email_error FROM coupond.send_recipients WHERE send_id = \(send.id) AND email_status = 'failed'"
            ).map { $0["email_error"] }
            #expect(reasons == ["no_email_address", "no_email_address", "no_email_address"])
        }
    }

    @Test func aHolderWhoseLeaseWasTakenOverWritesNothingEvenUnderTheSameInstanceName() throws {
        try TestDatabase.with { db in
            let (stalled, recipients, send) = try Self.claimedAndStarted(db, members: 10)
            let written = try recipients.writeRecipients(of: send, after: RecipientStore.beforeEveryCustomer, limit: 5)
            // The stalled holder's lease runs out; an instance with the same name (a restart) claims the send.
            try db.connection.execute(
                "UPDATE coupond.sends SET lease_expires_at = now() - interval '1 second' WHERE id = \(send.id)"
            )
            let instance = EngineStore(connection: db.connection, owner: "ledger-test", leaseSeconds: 30)
            let taken = try #require(try instance.claim(sendID: send.id))
            #expect(taken.leaseHolder != send.leaseHolder)
            let outcomes = written.pending.map { recipient in
                var outcome = RecipientOutcome(customerID: recipient.customerID)
                outcome.emailStatus = .sent
                return outcome
            }
            #expect(throws: LeaseLost.self) { try stalled.record(sendID: send.id, outcomes: outcomes) }
            #expect(throws: LeaseLost.self) { try stalled.renewLease(sendID: send.id) }
            #expect(throws: LeaseLost.self) {
                try recipients.writeRecipients(of: send, after: written.writtenUpTo!, limit: 5)
            }
            #expect(try stalled.finish(sendID: send.id) == false)
            let sent: Int? = try db.connection.queryRow(
                "SELECT count(*) AS n FROM coupond.send_recipients WHERE send_id = \(send.id) AND email_status = 'sent'"
            )?.decode("n")
            #expect(sent == 0)
            // The new holder writes.
            #expect(try instance.holding(taken).record(sendID: send.id, outcomes: outcomes).sent == 5)
        }
    }

    @Test func anInstanceWithoutTheLeaseWritesNoRecipient() throws {
        try TestDatabase.with { db in
            let (_, _, send) = try Self.claimedAndStarted(db, members: 10)
            let other = RecipientStore(connection: db.connection, owner: "another-instance")
            #expect(throws: LeaseLost.self) {
                try other.writeRecipients(of: send, after: RecipientStore.beforeEveryCustomer, limit: 20)
            }
            let rows: Int? = try db.connection.queryRow(
                "SELECT count(*) AS n FROM coupond.send_recipients WHERE send_id = \(send.id)"
            )?.decode("n")
            #expect(rows == 0)
        }
    }

    @Test func aSendIsNotDoneWhileItsListIsUnwritten() throws {
        try TestDatabase.with { db in
            let (engine, recipients, send) = try Self.claimedAndStarted(db, members: 10)
            #expect(try engine.finish(sendID: send.id) == false)
            let written = try recipients.writeRecipients(of: send, after: RecipientStore.beforeEveryCustomer, limit: 20)
            let outcomes = written.pending.map { recipient in
                var outcome = RecipientOutcome(customerID: recipient.customerID)
                outcome.emailStatus = .sent
                return outcome
            }
            try engine.record(sendID: send.id, outcomes: outcomes)
            #expect(try engine.finish(sendID: send.id) == true)
            let row = try db.connection.queryRow("SELECT recipient_count FROM coupond.sends WHERE id = \(send.id)")
            #expect(try row?.decode("recipient_count", as: Int.self) == 10)
        }
    }

    @Test func pendingPagesAreReadAlongThePrimaryKeyWithoutSortingTheRest() throws {
        try TestDatabase.with { db in
            let (_, store, send) = try Self.startedSend(db, members: 5000)
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
            let (store, ledger, send) = try Self.startedSend(db, members: 2000)
            let recipients = try ledger.pendingRecipients(sendID: send, after: 0, limit: 2000)
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
            let (_, _, send) = try Self.startedSend(db, members: 3)
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

import Foundation
import Postgres
import Signing
import TestSupport
import Testing

/// Rule 14 and the crash rules: nothing sent twice, nothing lost, across kill -9, SIGTERM and several instances.
@Suite(.serialized) struct CrashSafetyTests {
    /// Every customer got exactly one message per channel: as many distinct addresses as messages, leaving out the
    /// merchant notices (one per send).
    static func expectEachCustomerOnce(_ h: EngineHarness, customers: Int, channels: [String] = ["email", "sms"]) throws
    {
        let messages = try h.messages().filter { ($0["to"] as? String) != "owner@shop.example" }
        for channel in channels {
            let recipients = messages.filter { $0["channel"] as? String == channel }.compactMap { $0["to"] as? String }
            #expect(
                recipients.count == customers,
                "\(channel): \(recipients.count) messages for \(customers) customers"
            )
            #expect(Set(recipients).count == customers, "\(channel): some customer got two different messages")
        }
    }

    /// After a crash with SendGrid and Twilio behind a gateway that delivers repeats again: no customer got anything
    /// twice, every SMS went out once (Twilio's list settles the unknown ones), and each email either went out once
    /// or is reported as delivery unconfirmed (SendGrid cannot be asked; the policy is `skip`).
    static func expectNothingTwiceAndEveryGapReported(_ h: EngineHarness, send: Int64, customers: Int) throws {
        #expect(try h.stats()["redelivered"] == 0, "a customer got a message twice")
        try expectEachCustomerOnce(h, customers: customers, channels: ["sms"])
        let emails = try h.messages().filter {
            $0["channel"] as? String == "email" && ($0["to"] as? String) != "owner@shop.example"
        }
        #expect(Set(emails.compactMap { $0["to"] as? String }).count == emails.count, "an email went out twice")
        let rows = try h.db.connection.queryRow(
            """
            SELECT count(*) FILTER (WHERE email_status = 'sent')::int AS sent,
                   count(*) FILTER (WHERE email_error = 'delivery_unconfirmed')::int AS unconfirmed,
                   count(*) FILTER (WHERE email_status NOT IN ('sent', 'failed') OR sms_status <> 'sent')::int AS open
            FROM coupond.send_recipients WHERE send_id = \(send)
            """
        )!
        let sent: Int = try rows.decode("sent")
        let unconfirmed: Int = try rows.decode("unconfirmed")
        #expect(try rows.decode("open", as: Int.self) == 0)
        #expect(sent + unconfirmed == customers, "an email neither sent nor reported")
        #expect(sent <= emails.count && emails.count <= customers)
        #expect(unconfirmed <= 4 * 50, "\(unconfirmed) unconfirmed: more than the batches in flight")
    }

    /// A send on both channels to a new group of `customers`, with a coupon whose limit never gets in the way.
    /// Makes an outcome update fail with `sqlState` whenever `condition` (SQL) holds, as the server would.
    static func failOutcomeUpdates(_ h: EngineHarness, when condition: String, sqlState: String) throws {
        for statement in [
            """
            CREATE FUNCTION public.fail_outcome_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF \(condition) THEN
                    RAISE EXCEPTION 'injected by the test' USING ERRCODE = '\(sqlState)';
                END IF;
                RETURN NEW;
            END $$
            """,
            """
            CREATE TRIGGER fail_outcome_update BEFORE UPDATE ON coupond.send_recipients
                FOR EACH ROW EXECUTE FUNCTION public.fail_outcome_update()
            """,
        ] {
            try h.db.connection.execute(PostgresQuery(unsafeSQL: statement))
        }
    }

    static func scheduleLargeSend(_ h: EngineHarness, customers: Int) throws -> Int64 {
        let group = try h.fixtures.group(shop: h.shop, members: customers)
        var coupon = Fixtures.Coupon()
        coupon.receiveLimit = nil
        return try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop, coupon))
    }

    @Test func aKilledDaemonsSendIsFinishedByAnotherWithoutDuplicates() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5, "non_idempotent": true}"#) { h in
            let customers = 1500
            let send = try Self.scheduleLargeSend(h, customers: customers)
            let config = try h.configuration(leaseSeconds: 2, batchSize: 50)
            let first = try h.startDaemon(config: config, instance: "first")
            try h.arrive()
            let midway = try eventually(timeout: 60) {
                (try h.send(send).decode("sent_count", as: Int.self)) >= 300
            }
            #expect(midway, "\(first.stderr.suffix(1500))")
            first.crash()
            let sentAtCrash: Int = try h.send(send).decode("sent_count")
            #expect(sentAtCrash < customers, "the send finished before the crash; the test proves nothing")
            #expect(try h.send(send)["status"] == "sending")

            let second = try h.startDaemon(config: config, instance: "second")
            defer { _ = second.terminate() }
            #expect(try h.waitUntilFinished(send, timeout: 120) == "done", "\(second.stderr.suffix(1500))")
            #expect(second.stderr.contains("resuming send left by another worker"))
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == customers)
            #expect(try row.decode("failed_count", as: Int.self) == 0)
            #expect(try row.decode("unknown_count", as: Int.self) == 0)
            try Self.expectNothingTwiceAndEveryGapReported(h, send: send, customers: customers)
        }
    }

    @Test func aKilledDaemonsSendThroughWebhooksReachesEveryCustomerExactlyOnce() throws {
        // The webhooks drop a repeated key: a message in flight at the crash is sent again with it, never twice.
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5}"#) { h in
            let customers = 1500
            let send = try Self.scheduleLargeSend(h, customers: customers)
            let config = try h.configuration(
                emailProvider: "webhook",
                smsProvider: "webhook",
                leaseSeconds: 2,
                batchSize: 50
            )
            let first = try h.startDaemon(config: config, instance: "first")
            try h.arrive()
            #expect(try eventually(timeout: 60) { (try h.send(send).decode("sent_count", as: Int.self)) >= 300 })
            first.crash()
            let second = try h.startDaemon(config: config, instance: "second")
            defer { _ = second.terminate() }
            #expect(try h.waitUntilFinished(send, timeout: 120) == "done", "\(second.stderr.suffix(1500))")
            #expect(try h.send(send).decode("sent_count", as: Int.self) == customers)
            try Self.expectEachCustomerOnce(h, customers: customers)
            let duplicates = try h.stats()["duplicates"] ?? 0
            #expect(duplicates <= 4 * 50 * 2, "\(duplicates) repeats: more than the batches in flight")
        }
    }

    @Test func aDatabaseRestartMidSendLosesNothingAndRepeatsOnlyUnknownMessages() throws {
        let cluster = try PrivateCluster()
        try EngineHarness.with(
            faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5, "non_idempotent": true}"#,
            server: cluster.connectionString
        ) { h in
            let customers = 1500
            let send = try Self.scheduleLargeSend(h, customers: customers)
            let daemon = try h.startDaemon(config: try h.configuration(leaseSeconds: 2, batchSize: 50))
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try eventually(timeout: 60) { (try h.send(send).decode("sent_count", as: Int.self)) >= 300 })
            try cluster.restart()
            try h.db.reconnect()
            #expect(try h.send(send)["status"] == "sending")
            #expect(try h.waitUntilFinished(send, timeout: 120) == "done", "\(daemon.stderr.suffix(2000))")
            #expect(daemon.stderr.contains("database"), "the daemon should have noticed the restart")
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == customers)
            #expect(row["notice_status"] == "sent")
            try Self.expectNothingTwiceAndEveryGapReported(h, send: send, customers: customers)
        }
    }

    @Test(arguments: ["57014", "40P01", "25006", "53100"])
    func aDatabaseErrorThatMayPassLeavesTheSendToGoOnAndNeverFailsIt(sqlState: String) throws {
        // Statement timeout, deadlock, read-only during a switchover, disk full: raised once, by the 300th outcome.
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5}"#) { h in
            let customers = 600
            let send = try Self.scheduleLargeSend(h, customers: customers)
            // A sequence, because nextval is not rolled back with the statement it fails.
            try h.db.connection.execute(
                "CREATE SEQUENCE public.outcome_updates; GRANT USAGE ON SEQUENCE public.outcome_updates TO coupond_daemon"
            )
            try Self.failOutcomeUpdates(h, when: "nextval('public.outcome_updates') = 300", sqlState: sqlState)
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "webhook",
                    smsProvider: "webhook",
                    leaseSeconds: 2,
                    batchSize: 50
                )
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send, timeout: 90) == "done", "\(daemon.stderr.suffix(2000))")
            #expect(
                daemon.stderr.contains("database error that may pass") || daemon.stderr.contains("database back"),
                "the injected error was not met"
            )
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == customers)
            #expect(row["failure_reason"] == nil)
            try Self.expectEachCustomerOnce(h, customers: customers)
        }
    }

    @Test func aSendWhoseWorkKeepsFailingIsFailedAfterItsAttemptsAndTheMerchantIsTold() throws {
        try EngineHarness.with { h in
            let send = try Self.scheduleLargeSend(h, customers: 30)
            try Self.failOutcomeUpdates(h, when: "true", sqlState: "57014")
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "webhook",
                    smsProvider: "webhook",
                    leaseSeconds: 1,
                    extraEngine: #", "max_send_attempts": 3"#
                )
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send, timeout: 60) == "failed", "\(daemon.stderr.suffix(2000))")
            let row = try h.send(send)
            #expect(row["failure_reason"] == "system_error")
            #expect(try row.decode("attempts", as: Int.self) == 4, "three attempts, then the one that gave up")
            #expect(daemon.stderr.contains("taken up too often"))
            #expect(try eventually(timeout: 20) { try h.send(send)["notice_status"] == "sent" })
        }
    }

    @Test func aWorkerThatLosesItsLeaseStopsItsRequestsAtOnce() throws {
        // Answers take 3 s and 20 requests run at once: 200 emails would reach the gateway 20 every 3 s.
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 3000}"#) { h in
            let send = try Self.scheduleLargeSend(h, customers: 200)
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "webhook",
                    smsProvider: "webhook",
                    leaseSeconds: 2,
                    batchSize: 50,
                    extraEngine: #", "max_in_flight": 20"#
                )
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try eventually(timeout: 20) { (try h.stats()["requests"] ?? 0) >= 20 })
            // Another holder takes the send while the first 20 answers are still outstanding.
            try h.db.connection.execute(
                """
                UPDATE coupond.sends SET lease_owner = 'another-instance#99', lease_expires_at = now() + interval '1 hour'
                WHERE id = \(send)
                """
            )
            Thread.sleep(forTimeInterval: 7.5)
            #expect(daemon.stderr.contains("stopped working on send"), "\(daemon.stderr.suffix(1500))")
            // Without cancelling, the queued emails would have gone out 20 more every 3 s (60 or more by now).
            let requests = try h.stats()["requests"] ?? 0
            #expect(requests < 40, "\(requests) requests reached the gateway after the lease was lost")
        }
    }

    @Test func sigtermStopsCleanlyAndARestartFinishesWithoutRepeats() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5}"#) { h in
            let customers = 1000
            let send = try Self.scheduleLargeSend(h, customers: customers)
            let config = try h.configuration(batchSize: 50)
            let first = try h.startDaemon(config: config)
            try h.arrive()
            #expect(try eventually(timeout: 60) { (try h.send(send).decode("sent_count", as: Int.self)) >= 200 })
            let started = Date()
            #expect(first.terminate(timeout: 25) == 0)
            #expect(Date().timeIntervalSince(started) < 20, "graceful stop took too long")
            #expect(first.stderr.contains("send handed back unfinished"))
            // The lease was given back: another instance can continue at once, not after the lease runs out.
            #expect(try h.send(send)["lease_owner"] == nil)

            let second = try h.startDaemon(config: config)
            defer { _ = second.terminate() }
            #expect(try h.waitUntilFinished(send, timeout: 60) == "done")
            try Self.expectEachCustomerOnce(h, customers: customers)
            #expect(try h.stats()["duplicates"] == 0, "a clean stop records every message it sent")
        }
    }

    @Test func twoInstancesShareTheWorkAndNeverBothSendToOneCustomer() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 2}"#) { h in
            var coupon = Fixtures.Coupon()
            coupon.receiveLimit = nil
            let couponID = try h.fixtures.coupon(shop: h.shop, coupon)
            var sends: [Int64] = []
            var total = 0
            for size in [400, 300, 200, 100] {
                let group = try h.fixtures.group(shop: h.shop, members: size)
                sends.append(try h.schedule(group: group, coupon: couponID))
                total += size
            }
            let config = try h.configuration(batchSize: 50)
            let a = try h.startDaemon(config: config, instance: "alpha")
            let b = try h.startDaemon(config: config, instance: "beta")
            defer {
                _ = a.terminate()
                _ = b.terminate()
            }
            try h.arrive()
            for send in sends { #expect(try h.waitUntilFinished(send, timeout: 120) == "done") }
            try Self.expectEachCustomerOnce(h, customers: total)
            #expect(try h.stats()["duplicates"] == 0)
            let claims = try h.db.connection.queryRow("SELECT sum(attempts) AS n FROM coupond.sends")
            #expect(try claims?.decode("n", as: Int.self) ?? 0 >= 4)
        }
    }

    @Test func cancelRacingTheStartNeverLeavesACancelledSendThatSent() throws {
        try EngineHarness.with { h in
            let group = try h.fixtures.group(shop: h.shop, members: 50)
            let coupon = try h.fixtures.coupon(shop: h.shop)
            let cancelled = try h.schedule(group: group, coupon: coupon, hoursAhead: 2)
            let raced = try h.schedule(group: group, coupon: coupon, hoursAhead: 3)
            // Exactly 2 hours before the first send: cancelling is still allowed.
            try h.fixtures.setClock(EngineHarness.scheduledFrom)
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            _ = try h.db.connection.execute("SELECT coupond.cancel_send(\(cancelled))")
            // The second send's hour arrives while cancels hammer it from other sessions.
            let outcomes = Outcomes()
            let databaseName = h.db.name
            let racers = try (0..<4).map { _ in try TestDatabase.connect(to: databaseName) }
            let list = ConnectionList(racers)
            defer { racers.forEach { $0.close() } }
            try h.arrive(hoursAhead: 3)
            concurrently(4) { index in
                for _ in 0..<20 {
                    do {
                        try list.take(index).execute("SELECT coupond.cancel_send(\(raced))")
                        outcomes.add("cancelled")
                    } catch let error as PostgresError {
                        outcomes.add(error.constraint ?? "\(error)")
                    } catch {
                        outcomes.add("\(error)")
                    }
                }
            }
            #expect(!outcomes.values.contains("cancelled"))
            #expect(Set(outcomes.values).isSubset(of: ["cancel_until_2h_before", "cancel_only_not_started"]))
            #expect(try h.waitUntilFinished(raced) == "done")
            #expect(try h.send(cancelled)["status"] == "cancelled")
            let messages = try h.messages().filter { ($0["to"] as? String) != "owner@shop.example" }
            #expect(messages.count == 100, "only the send that was not cancelled goes out")
        }
    }

    @Test func concurrentClaimsStopAtTheReceiveLimit() throws {
        try EngineHarness.with { h in
            let customers = 12
            let group = try h.fixtures.group(shop: h.shop, members: customers)
            var spec = Fixtures.Coupon()
            spec.receiveLimit = 13
            let coupon = try h.fixtures.coupon(shop: h.shop, spec)
            let send = try h.schedule(group: group, coupon: coupon, sms: false)
            let daemon = try h.startDaemon(config: try h.configuration())
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done")
            // Others claimed meanwhile: 5 remain for 12 customers.
            try h.db.connection.execute("UPDATE coupond.coupons SET claimed_count = 8 WHERE id = \(coupon)")
            let issuer = ClaimTokenIssuer(key: Data(repeating: 7, count: 32))
            let ids: [Int64] = try h.db.connection.query(
                "SELECT customer_id FROM coupond.send_recipients WHERE send_id = \(send) ORDER BY customer_id"
            ).map { try $0.decode("customer_id") }
            // The link each customer got carries the token the issuer derives.
            let firstAddress = try h.db.connection.queryRow(
                "SELECT email FROM coupond.customers WHERE id = \(ids[0])"
            )!["email"]
            let firstLink = try #require(
                try h.messages().first { $0["to"] as? String == firstAddress }?["text"] as? String
            )
            #expect(firstLink.contains("coupon_claim_token=\(issuer.token(sendID: send, customerID: ids[0]))"))

            let outcomes = Outcomes()
            let racers = try ids.map { _ in try TestDatabase.connect(to: h.db.name) }
            let list = ConnectionList(racers)
            defer { racers.forEach { $0.close() } }
            concurrently(ids.count) { index in
                let token = issuer.token(sendID: send, customerID: ids[index])
                do {
                    try list.take(index).execute("SELECT * FROM coupond.claim_coupon(\(token), \(ids[index]))")
                    outcomes.add("claimed")
                } catch let error as PostgresError {
                    outcomes.add(error.constraint ?? "\(error)")
                } catch {
                    outcomes.add("\(error)")
                }
            }
            #expect(outcomes.values.filter { $0 == "claimed" }.count == 5, "\(outcomes.values)")
            #expect(outcomes.values.filter { $0 == "claim_limit_reached" }.count == 7)
            let row = try h.db.connection.queryRow("SELECT claimed_count FROM coupond.coupons WHERE id = \(coupon)")
            #expect(try row?.decode("claimed_count", as: Int.self) == 13)

            func claim(_ token: String, _ customer: Int64) -> String {
                do {
                    try h.db.connection.execute("SELECT * FROM coupond.claim_coupon(\(token), \(customer))")
                    return "claimed"
                } catch let error as PostgresError {
                    return error.constraint ?? "\(error)"
                } catch {
                    return "\(error)"
                }
            }
            try h.db.connection.execute("UPDATE coupond.coupons SET receive_limit = 100 WHERE id = \(coupon)")
            let winner = try #require(
                try h.db.connection.queryRow(
                    "SELECT customer_id FROM coupond.send_recipients WHERE send_id = \(send) AND claimed_at IS NOT NULL LIMIT 1"
                )?.decode("customer_id", as: Int64.self)
            )
            let token = issuer.token(sendID: send, customerID: winner)
            #expect(claim(token, winner) == "claim_once_per_customer")
            #expect(claim(token, winner == ids[0] ? ids[1] : ids[0]) == "claim_customer_matches")
            #expect(claim("not-a-token", winner) == "claim_token_valid")
            // The ids in a token only say whose it is: with a MAC that is not the key's, it is refused like any other.
            let forged = String(token.dropLast(4)) + (token.hasSuffix("AAAA") ? "BBBB" : "AAAA")
            #expect(claim(forged, winner) == "claim_token_valid")
            // A token issued before schema version 6 (the MAC alone, its hash in claim_tokens) still claims.
            let unclaimed = try #require(
                try h.db.connection.queryRow(
                    "SELECT customer_id FROM coupond.send_recipients WHERE send_id = \(send) AND claimed_at IS NULL LIMIT 1"
                )?.decode("customer_id", as: Int64.self)
            )
            let legacy = String(issuer.token(sendID: send, customerID: unclaimed).split(separator: ".").last!)
            try h.db.connection.execute(
                """
                INSERT INTO coupond.claim_tokens (token_hash, send_id, customer_id)
                VALUES (sha256(convert_to(\(legacy), 'UTF8')), \(send), \(unclaimed))
                """
            )
            #expect(claim(legacy, unclaimed) == "claimed")
            try h.db.connection.execute("UPDATE coupond.coupons SET status = 'deleted' WHERE id = \(coupon)")
            let loser = try #require(ids.first { $0 != winner })
            #expect(claim(issuer.token(sendID: send, customerID: loser), loser) == "claim_coupon_valid")
        }
    }
}

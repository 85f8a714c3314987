import Foundation
import Postgres
import TestSupport
import Testing

/// The group lock follows the lease, the scheduler cannot be starved, and the daemon runs without session state.
@Suite(.serialized) struct TakeoverAndSchedulingTests {
    @Test func aFrozenInstancesSendIsTakenOverWithinItsLeaseAndTheFrozenOneSendsNothingWhenItWakes() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 10}"#) { h in
            let customers = 1500
            let leaseSeconds = 3.0
            let send = try CrashSafetyTests.scheduleLargeSend(h, customers: customers)
            let config = try h.configuration(
                emailProvider: "webhook",
                smsProvider: "webhook",
                leaseSeconds: leaseSeconds,
                batchSize: 50
            )
            let frozen = try h.startDaemon(config: config, instance: "frozen")
            defer {
                kill(frozen.process.processIdentifier, SIGCONT)
                _ = frozen.terminate(timeout: 10)
            }
            try h.arrive()
            #expect(try eventually(timeout: 60) { (try h.send(send).decode("sent_count", as: Int.self)) >= 200 })
            let other = try h.startDaemon(config: config, instance: "other")
            defer { _ = other.terminate() }
            kill(frozen.process.processIdentifier, SIGSTOP)
            let frozenAt = Date()
            #expect(try h.send(send)["status"] == "sending")

            let takenOver = try eventually(timeout: 30) {
                (try h.send(send)["lease_owner"])?.hasPrefix("other#") == true
            }
            let takeover = Date().timeIntervalSince(frozenAt)
            #expect(takenOver, "\(other.stderr.suffix(1500))")
            #expect(takeover <= leaseSeconds + 2, "taken over after \(takeover) s")
            #expect(try h.waitUntilFinished(send, timeout: 120) == "done", "\(other.stderr.suffix(1500))")
            let finished = try h.send(send)
            // The frozen instance is still stopped: what reaches the gateway from here on is the other one's last
            // answers on their way. Let them land, then count.
            Thread.sleep(forTimeInterval: 1)
            let whenDone = try h.stats()

            kill(frozen.process.processIdentifier, SIGCONT)
            #expect(
                eventually(timeout: 15) { frozen.stderr.contains("stopped working on send") },
                "\(frozen.stderr.suffix(1500))"
            )
            Thread.sleep(forTimeInterval: 1)
            // Nothing new goes out from the woken instance. Under load, requests it had out at the instant of the
            // SIGSTOP have reached this idempotent webhook again after the wake (up to 44 in one run): libcurl may
            // repeat a repeatable request by itself on a connection that closed, which is why only requests to a
            // gateway that drops repeats are repeatable. Each is a repeat of a key already taken, and dropped.
            let afterWake = try h.stats()
            #expect(afterWake["accepted"] == whenDone["accepted"], "the woken instance delivered a message")
            #expect(
                (afterWake["requests"] ?? 0) - (whenDone["requests"] ?? 0)
                    == (afterWake["duplicates"] ?? 0) - (whenDone["duplicates"] ?? 0),
                "the woken instance sent a request that was not a repeat: \(frozen.stderr.suffix(2000))"
            )
            let after = try h.send(send)
            for column in ["sent_count", "failed_count", "lease_owner", "finished_at", "notice_status"] {
                #expect(after[column] == finished[column], "the woken instance changed \(column)")
            }
            #expect(try after.decode("sent_count", as: Int.self) == customers)
            try CrashSafetyTests.expectEachCustomerOnce(h, customers: customers)
        }
    }

    @Test func aDueSendOfAFreeGroupStartsWhileThirtySendsWaitForABusyGroup() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 20}"#) { h in
            let busy = try h.fixtures.group(shop: h.shop, members: 3000)
            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let coupon = try h.fixtures.coupon(shop: h.shop, unlimited)
            let holding = try h.schedule(group: busy, coupon: coupon, hoursAhead: 2)
            let waiting = try (0..<30).map { _ in try h.schedule(group: busy, coupon: coupon, hoursAhead: 2) }
            let free = try h.schedule(
                group: try h.fixtures.group(shop: h.shop, members: 5, name: "Free"),
                coupon: coupon,
                hoursAhead: 3
            )
            let daemon = try h.startDaemon(
                config: try h.configuration(emailProvider: "webhook", smsProvider: "webhook")
            )
            defer { _ = daemon.terminate() }
            try h.arrive(hoursAhead: 3)
            #expect(try eventually(timeout: 30) { try h.send(holding)["status"] == "sending" })
            #expect(try h.waitUntilFinished(free, timeout: 10) == "done", "\(daemon.stderr.suffix(1500))")
            #expect(try h.send(holding)["status"] == "sending", "the busy group's send ended first; nothing was proven")
            for send in waiting { #expect(try h.send(send)["status"] == "not_started") }
        }
    }

    @Test func eachDueSendIsStartedByExactlyOneOfThreeInstancesWithinTwoSeconds() throws {
        try EngineHarness.with { h in
            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let coupon = try h.fixtures.coupon(shop: h.shop, unlimited)
            let sends = try (0..<6).map { index in
                try h.schedule(
                    group: try h.fixtures.group(shop: h.shop, members: 20, name: "G\(index)"),
                    coupon: coupon
                )
            }
            let config = try h.configuration(emailProvider: "webhook", smsProvider: "webhook")
            let daemons = try (0..<3).map { try h.startDaemon(config: config, instance: "instance-\($0)") }
            defer { daemons.forEach { _ = $0.terminate() } }
            #expect(eventually(timeout: 30) { daemons.allSatisfy { $0.stderr.contains("engine started") } })
            try h.arrive()
            let arrived = Date()
            let allStarted = try eventually(timeout: 10) {
                try sends.allSatisfy { try h.send($0)["status"] != "not_started" }
            }
            #expect(allStarted)
            #expect(Date().timeIntervalSince(arrived) <= 2.5, "started after \(Date().timeIntervalSince(arrived)) s")
            for send in sends {
                #expect(try h.waitUntilFinished(send) == "done")
                #expect(try h.send(send).decode("attempts", as: Int.self) == 1, "send \(send) was taken up twice")
            }
            try CrashSafetyTests.expectEachCustomerOnce(h, customers: 6 * 20)
        }
    }

    @Test func withListenOffTheDaemonPollsAndKeepsNothingInItsSessions() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 5}"#) { h in
            let customers = 600
            let send = try CrashSafetyTests.scheduleLargeSend(h, customers: customers)
            let config = try h.configuration(
                emailProvider: "webhook",
                smsProvider: "webhook",
                batchSize: 50,
                extraEngine: #", "listen": false"#
            )
            let daemon = try h.startDaemon(config: config)
            defer { _ = daemon.terminate() }
            try h.arrive()
            var sessionLocks = 0
            var listeners = 0
            let finished = try eventually(timeout: 60) {
                // An advisory lock held by a session that is idle, outside any transaction, is session state.
                sessionLocks += try h.db.connection.queryRow(
                    """
                    SELECT count(*)::int AS locks FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.locktype = 'advisory' AND a.state = 'idle' AND a.datname = current_database()
                    """
                )!.decode("locks", as: Int.self)
                listeners += try h.db.connection.queryRow(
                    """
                    SELECT count(*)::int AS listeners FROM pg_stat_activity
                    WHERE datname = current_database() AND query ILIKE 'LISTEN%'
                    """
                )!.decode("listeners", as: Int.self)
                return try h.send(send)["status"] == "done"
            }
            #expect(finished, "\(daemon.stderr.suffix(1500))")
            #expect(sessionLocks == 0)
            #expect(listeners == 0)
            try CrashSafetyTests.expectEachCustomerOnce(h, customers: customers)
        }
    }
}

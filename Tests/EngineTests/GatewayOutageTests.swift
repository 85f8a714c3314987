import Foundation
import Postgres
import TestSupport
import Testing

/// A gateway that goes down in the middle of a send: its messages wait for it, no customer fails for good, and the
/// operator sees it in `coupond status`.
@Suite(.serialized) struct GatewayOutageTests {
    @Test func aGatewayOutageMidSendHoldsTheMessagesAndTheSendEndsWithEveryoneSent() throws {
        try EngineHarness.with(faults: #"{"delay_rate": 1.0, "delay_milliseconds": 20}"#) { h in
            let customers = 600
            let group = try h.fixtures.group(shop: h.shop, members: customers)
            var coupon = Fixtures.Coupon()
            coupon.receiveLimit = nil
            let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop, coupon), sms: false)
            // An 8-second outage, longer than the old five quick attempts and shorter than the retry budget.
            let config = try h.configuration(
                emailProvider: "webhook",
                batchSize: 50,
                maxAttempts: nil,
                extraEngine: #", "max_in_flight": 16"#,
                extraEmail: #", "retry_budget_seconds": 60"#
            )
            let daemon = try h.startDaemon(config: config)
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try eventually(timeout: 60) { (try h.send(send).decode("sent_count", as: Int.self)) >= 100 })
            try h.setFaults(#"{"error_rate": 1.0, "error_status": 503}"#)
            #expect(
                eventually(timeout: 20) { daemon.stderr.contains("gateway unavailable") },
                "\(daemon.stderr.suffix(1500))"
            )
            let requestsWhenOpen = try h.stats()["requests"] ?? 0
            var status = ""
            let shown = try eventually(timeout: 10) {
                let result = try runProduct(
                    "coupond",
                    ["status", "\(send)"],
                    environment: h.db.environment.mapValues { $0 }
                )
                status = result.stdout + result.stderr
                return status.contains("email gateway (email-webhook) unavailable since")
            }
            #expect(shown, "\(status)")
            Thread.sleep(forTimeInterval: 8)
            // Held, the messages send a probe now and then instead of a request each per backoff.
            let requestsDuringOutage = (try h.stats()["requests"] ?? 0) - requestsWhenOpen
            #expect(requestsDuringOutage <= 8, "\(requestsDuringOutage) requests while the gateway was down")
            #expect(try h.send(send)["status"] == "sending")
            try h.setFaults(#"{"delay_rate": 1.0, "delay_milliseconds": 20}"#)
            #expect(try h.waitUntilFinished(send, timeout: 120) == "done", "\(daemon.stderr.suffix(2000))")
            #expect(daemon.stderr.contains("gateway available again"))
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == customers)
            #expect(try row.decode("failed_count", as: Int.self) == 0)
            #expect(row["notice_status"] == "sent")
            try CrashSafetyTests.expectEachCustomerOnce(h, customers: customers, channels: ["email"])
            let after = try runProduct(
                "coupond",
                ["status", "\(send)"],
                environment: h.db.environment.mapValues { $0 }
            )
            #expect(!after.stdout.contains("unavailable"), "\(after.stdout)")
        }
    }
}

extension GatewayOutageTests {
    @Test func aGatewayDownForLongerThanTheRetryBudgetFailsTheHeldMessagesAtItsEndWithoutMoreRequests() throws {
        try EngineHarness.with(faults: #"{"error_rate": 1.0, "error_status": 503}"#) { h in
            let group = try h.fixtures.group(shop: h.shop, members: 40)
            let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop), sms: false)
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "webhook",
                    maxAttempts: nil,
                    extraEmail: #", "retry_budget_seconds": 6, "breaker_failures": 5"#
                )
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send, timeout: 60) == "done", "\(daemon.stderr.suffix(1500))")
            let row = try h.send(send)
            #expect(try row.decode("failed_count", as: Int.self) == 40)
            let reasons = try h.db.connection.query(
                "SELECT DISTINCT email_error FROM coupond.send_recipients WHERE send_id = \(send)"
            ).map { $0["email_error"] }
            #expect(reasons == ["retries_exhausted"])
            // 40 messages retried for 6 s each would be hundreds of requests; held, they are a handful of probes.
            let requests = try h.stats()["requests"] ?? 0
            #expect(requests < 40 + 20, "\(requests) requests to a gateway that was down")
        }
    }
}

import Curl
import Foundation
import GatewaySimulator
import Testing

/// libcurl against a real HTTP server on loopback: the gateway simulator.
@Suite struct CurlEasyClientTests {
    static func withSimulator(_ faults: FaultPlan = FaultPlan(), _ body: (GatewaySimulator, String) throws -> Void)
        throws
    {
        let simulator = try GatewaySimulator(faults: faults)
        defer { simulator.stop() }
        try body(simulator, "http://127.0.0.1:\(simulator.port)")
    }

    static func email(_ base: String, key: String = "k-1", timeout: Double = 15) -> HTTPRequest {
        HTTPRequest(
            method: "POST",
            url: base + "/webhook/email",
            headers: [("Content-Type", "application/json"), ("Idempotency-Key", key)],
            body: Data(#"{"to":"ann@mail.example","subject":"Hi","text":"Hello"}"#.utf8),
            totalTimeout: timeout
        )
    }

    @Test func aRequestWhoseValuesCouldEndAProtocolLineIsRefusedBeforeAnythingIsSent() throws {
        try Self.withSimulator { (simulator: GatewaySimulator, base: String) throws in
            let client = CurlEasyClient()
            var header = Self.email(base)
            header.headers.append(("Idempotency-Key", "k\r\nX-Injected: 1"))
            var envelope = HTTPRequest(method: "POST", url: "smtp://127.0.0.1:\(simulator.port)", body: Data("x".utf8))
            for recipient in ["a@b.example>\r\nRCPT TO:<evil@c.example", "<a@b.example>", "a b@c.example", "a\u{0}@b"] {
                envelope.mail = MailEnvelope(
                    from: "shop@b.example",
                    recipients: [recipient],
                    username: nil,
                    password: nil,
                    requireTLS: false
                )
                do {
                    _ = try client.perform(envelope)
                    Issue.record("\(recipient.debugDescription) was not refused")
                } catch let error as CurlError {
                    #expect(error.isUnsafeRequest, "\(recipient.debugDescription): \(error)")
                }
            }
            #expect(throws: CurlError.self) { _ = try client.perform(header) }
            #expect(simulator.stats.accepted == 0)
            // The same client still works for a clean request.
            #expect(try client.perform(Self.email(base)).status == 200)
        }
    }

    @Test func postsABodyAndReadsStatusHeadersAndBody() throws {
        try Self.withSimulator { simulator, base in
            let client = CurlEasyClient()
            let response = try client.perform(Self.email(base))
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "application/json")
            let json = try JSONSerialization.jsonObject(with: response.body) as? [String: String]
            #expect(json?["id"]?.hasPrefix("EM") == true)
            #expect(simulator.messages().first?.to == "ann@mail.example")
            #expect(simulator.messages().first?.subject == "Hi")
            // A second request on the same client reuses the handle.
            #expect(try client.perform(Self.email(base, key: "k-2")).status == 200)
            #expect(simulator.stats.accepted == 2)
        }
    }

    @Test func anErrorStatusIsAResponseNotAnError() throws {
        var faults = FaultPlan()
        faults.rateLimitRate = 1
        faults.retryAfterSeconds = 7
        try Self.withSimulator(faults) { _, base in
            let response = try CurlEasyClient().perform(Self.email(base))
            #expect(response.status == 429)
            #expect(response.headers["retry-after"] == "7")
        }
    }

    @Test func aSlowServerTimesOut() throws {
        var faults = FaultPlan()
        faults.delayRate = 1
        faults.delayMilliseconds = 2000
        try Self.withSimulator(faults) { _, base in
            let error = #expect(throws: CurlError.self) { try CurlEasyClient().perform(Self.email(base, timeout: 0.3)) }
            #expect(error?.isTimeout == true)
        }
    }

    @Test func aDroppedConnectionIsACurlErrorThatSaysTheRequestWasSent() throws {
        var faults = FaultPlan()
        faults.dropRate = 1
        try Self.withSimulator(faults) { _, base in
            var request = Self.email(base)
            request.repeatable = false
            let error = #expect(throws: CurlError.self) { try CurlEasyClient().perform(request) }
            // The server read the whole request before closing: it may have acted on it.
            #expect(error?.requestSent == true)
        }
    }

    @Test func aPostThatNeverConnectedWasNotSent() throws {
        var request = HTTPRequest(method: "POST", url: "http://127.0.0.1:1/webhook", body: Data("{}".utf8))
        request.connectTimeout = 1
        request.repeatable = false
        let error = #expect(throws: CurlError.self) { try CurlEasyClient().perform(request) }
        #expect(error?.requestSent == false)
    }

    @Test func aRefusedConnectionIsACurlErrorWithoutTheURL() throws {
        let error = #expect(throws: CurlError.self) {
            try CurlEasyClient().perform(
                HTTPRequest(url: "http://127.0.0.1:1/secret-path?token=abc", connectTimeout: 1)
            )
        }
        #expect(error?.operation == "perform")
        #expect(error?.description.contains("token=abc") == false)
    }

    @Test func theMultiDriverRunsManyRequestsAtOnceAndReusesConnections() throws {
        var faults = FaultPlan()
        faults.delayRate = 1
        faults.delayMilliseconds = 100
        try Self.withSimulator(faults) { simulator, base in
            let driver = CurlMultiDriver(maxInFlight: 50)
            driver.start()
            defer { driver.shutdown() }
            let group = DispatchGroup()
            let statuses = StatusList()
            let started = Date()
            for index in 0..<200 {
                group.enter()
                driver.submit(Self.email(base, key: "key-\(index)")) { result in
                    statuses.add((try? result.get().status) ?? -1)
                    group.leave()
                }
            }
            group.wait()
            // 200 requests of 100 ms each, 50 at a time: about 0.4 s, far from 20 s one after another.
            #expect(Date().timeIntervalSince(started) < 3)
            #expect(statuses.values.allSatisfy { $0 == 200 })
            #expect(simulator.stats.accepted == 200)
        }
    }
}

/// Statuses reported from the driver thread; every access holds `lock`.
final class StatusList: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Int] = []
    func add(_ value: Int) { lock.withLock { stored.append(value) } }
    var values: [Int] { lock.withLock { stored } }
}

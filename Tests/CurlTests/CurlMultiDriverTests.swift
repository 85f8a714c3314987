import Curl
import Dispatch
import Foundation
import GatewaySimulator
import Testing

/// The libcurl multi driver against the gateway simulator on loopback: many requests through few slots.
@Suite struct CurlMultiDriverTests {
    /// Submits `requests` and waits for every completion; returns the statuses (-1 for a transfer error).
    static func run(_ driver: CurlMultiDriver, _ requests: [HTTPRequest]) -> [Int] {
        let group = DispatchGroup()
        let statuses = StatusList()
        for request in requests {
            group.enter()
            driver.submit(request) { result in
                statuses.add((try? result.get().status) ?? -1)
                group.leave()
            }
        }
        group.wait()
        return statuses.values
    }

    @Test func theDriverNeverSleepsWhileARequestCouldStart() throws {
        try CurlEasyClientTests.withSimulator { simulator, base in
            // Few slots and a server that answers at once: the slots empty within the call that fills them, and a
            // driver that then waited for its poll's timeout would stall here thousands of times.
            let driver = CurlMultiDriver(maxInFlight: 8, maxConnectionsPerHost: 8)
            driver.start()
            defer { driver.shutdown() }
            let requests = (0..<3000).map { CurlEasyClientTests.email(base, key: "key-\($0)") }
            let statuses = Self.run(driver, requests)
            #expect(statuses.count == 3000 && statuses.allSatisfy { $0 == 200 })
            #expect(simulator.stats.accepted == 3000)
            let statistics = driver.statistics
            #expect(statistics.completed == 3000)
            #expect(statistics.stalledPolls == 0, "\(statistics)")
        }
    }

    @Test func cancellingStopsRunningTransfersAndScheduledRetriesAtOnceAndNothingElse() throws {
        // Every answer is held back 5 s: cancelled transfers must not wait for it.
        var slow = FaultPlan()
        slow.delayRate = 1
        slow.delayMilliseconds = 5000
        try CurlEasyClientTests.withSimulator(slow) { simulator, base in
            let driver = CurlMultiDriver(maxInFlight: 16)
            driver.start()
            defer { driver.shutdown() }
            let cancellation = CurlCancellation()
            let results = StatusList()
            let group = DispatchGroup()
            let cancelledGroup = DispatchGroup()
            func submit(_ key: String, notBefore: ContinuousClock.Instant = .now, token: CurlCancellation?) {
                let group = token == nil ? group : cancelledGroup
                group.enter()
                driver.submit(
                    CurlEasyClientTests.email(base, key: key),
                    notBefore: notBefore,
                    cancellation: token
                ) { result in
                    switch result {
                    case .failure(let error) where error.isCancelled: results.add(-2)
                    case .failure: results.add(-1)
                    case .success(let response): results.add(response.status)
                    }
                    group.leave()
                }
            }
            // Running transfers, and retries scheduled a minute ahead, as a worker that lost its lease leaves them.
            for index in 0..<8 { submit("running-\(index)", token: cancellation) }
            for index in 0..<8 { submit("later-\(index)", notBefore: .now + .seconds(60), token: cancellation) }
            // Another send's request on the same driver.
            submit("other", token: nil)
            Thread.sleep(forTimeInterval: 0.3)
            let cancelledAt = ContinuousClock.now
            driver.cancel(cancellation)
            // A request submitted after the cancel with the same token never starts.
            submit("after", token: cancellation)
            // The cancelled ones end at once, long before the 5-second answers.
            #expect(cancelledGroup.wait(timeout: .now() + 1) == .success)
            #expect(ContinuousClock.now - cancelledAt < .seconds(1))
            #expect(group.wait(timeout: .now() + 8) == .success)
            let values = results.values
            #expect(values.filter { $0 == -2 }.count == 17, "\(values)")
            #expect(values.filter { $0 == 200 }.count == 1, "the other send's request still completes")
            #expect(simulator.stats.requests <= 9, "a cancelled retry started: \(simulator.stats.requests) requests")
        }
    }

    @Test func requestsThatEndInsideOnePerformCallDoNotStallTheOthers() {
        // libcurl refuses these inside the perform call that starts them, so every slot is free again before the
        // driver would wait: the case where a fast gateway answers at once, without depending on timing.
        let driver = CurlMultiDriver(maxInFlight: 8)
        driver.start()
        defer { driver.shutdown() }
        let statuses = Self.run(driver, (0..<400).map { HTTPRequest(url: "ftp://127.0.0.1/coupon-\($0)") })
        #expect(statuses.count == 400 && statuses.allSatisfy { $0 == -1 })
        #expect(driver.statistics.stalledPolls == 0, "\(driver.statistics)")
    }

    @Test func aRequestLibcurlRefusesStillCompletesAndTheOthersGoOn() throws {
        try CurlEasyClientTests.withSimulator { simulator, base in
            let driver = CurlMultiDriver(maxInFlight: 4)
            driver.start()
            defer { driver.shutdown() }
            var requests = (0..<20).map { CurlEasyClientTests.email(base, key: "key-\($0)") }
            // Not a protocol the handles allow, and a port nobody listens on.
            requests.insert(HTTPRequest(url: "ftp://127.0.0.1/coupon"), at: 5)
            requests.insert(HTTPRequest(url: "http://127.0.0.1:1/", connectTimeout: 1), at: 10)
            let statuses = Self.run(driver, requests)
            #expect(statuses.filter { $0 == 200 }.count == 20)
            #expect(statuses.filter { $0 == -1 }.count == 2)
            #expect(simulator.stats.accepted == 20)
        }
    }

    @Test func aReusedHandleSendsEachRequestAsItIsAndNotThePreviousOne() throws {
        try CurlEasyClientTests.withSimulator { simulator, base in
            let driver = CurlMultiDriver(maxInFlight: 1)
            driver.start()
            defer { driver.shutdown() }
            // A POST, a GET on the same handle, then a POST with a longer body: nothing leaks from one to the next.
            let long = String(repeating: "x", count: 10_000)
            let requests = [
                CurlEasyClientTests.email(base, key: "first"),
                HTTPRequest(url: base + "/stats"),
                HTTPRequest(
                    method: "POST",
                    url: base + "/webhook/email",
                    headers: [("Content-Type", "application/json"), ("Idempotency-Key", "second")],
                    body: Data(#"{"to":"bo@mail.example","subject":"\#(long)","text":"Hello"}"#.utf8)
                ),
            ]
            #expect(Self.run(driver, requests) == [200, 200, 200])
            let messages = simulator.messages()
            #expect(messages.map(\.idempotencyKey) == ["first", "second"])
            #expect(messages.last?.subject == long)
        }
    }
}

import Curl
import Foundation
import Postgres
import Signing
import TestSupport
import Testing

/// The HTTP listener against clients that connect and then do not behave: silent, slow, idle, HTTP/1.0, refused
/// mid-body, too many, stalled mid-download. Each is closed or refused in time, and the listener keeps answering.
@Suite(.serialized) struct ListenerHardeningTests {
    /// Short deadlines, so that a test sees them pass.
    static let limits = #", "header_timeout_seconds": 1, "body_timeout_seconds": 2, "idle_timeout_seconds": 1"#

    static func port(_ base: String) -> Int { Int(base.split(separator: ":").last!)! }

    @Test func aConnectionThatSendsNothingOrAHeadTooSlowlyIsClosedAtTheHeaderDeadline() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h, extraHTTP: Self.limits)
            defer { _ = daemon.terminate() }
            let silent = try RawConnection(port: Self.port(base))
            let slow = try RawConnection(port: Self.port(base))
            slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
            let closedSilent = silent.secondsUntilClosed(timeout: 5)
            #expect(closedSilent != nil && closedSilent! < 3, "silent connection still open")
            // Another header line now and then does not buy more time.
            slow.send("X-Slow: 1\r\n")
            #expect(slow.secondsUntilClosed(timeout: 3) != nil, "slow-header connection still open")
        }
    }

    @Test func aBodyThatDoesNotArriveInTimeClosesTheConnection() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h, extraHTTP: Self.limits)
            defer { _ = daemon.terminate() }
            let connection = try RawConnection(port: Self.port(base))
            connection.send(
                "POST /sms/replies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            for _ in 0..<3 {
                Thread.sleep(forTimeInterval: 0.5)
                connection.send(" ")
            }
            let closed = connection.secondsUntilClosed(timeout: 5)
            #expect(closed != nil, "a trickled body kept the connection open past the body deadline")
        }
    }

    @Test func aKeptAliveConnectionIsClosedAfterTheIdleTimeAndHTTP10AfterItsAnswer() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h, extraHTTP: Self.limits)
            defer { _ = daemon.terminate() }
            let kept = try RawConnection(port: Self.port(base))
            kept.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let answer = kept.read(timeout: 5, until: "ok\n")
            #expect(answer.text.hasPrefix("HTTP/1.1 200") && !answer.closed, "\(answer)")
            let idle = kept.secondsUntilClosed(timeout: 5)
            #expect(idle != nil && idle! < 3, "an idle kept-alive connection stayed open")

            let old = try RawConnection(port: Self.port(base))
            old.send("GET /healthz HTTP/1.0\r\n\r\n")
            let start = Date()
            let reply = old.read(timeout: 5)
            #expect(reply.text.contains("200") && reply.closed, "\(reply)")
            #expect(Date().timeIntervalSince(start) < 0.9, "an HTTP/1.0 answer waited for the idle deadline to close")

            let closing = try RawConnection(port: Self.port(base))
            closing.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let closed = closing.read(timeout: 0.9)
            #expect(closed.text.contains("200") && closed.closed, "\(closed)")
        }
    }

    @Test func anEarlyRefusalOfALargeBodyClosesTheConnectionInsteadOfLeavingItHalfOpen() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h, extraHTTP: Self.limits)
            defer { _ = daemon.terminate() }
            let connection = try RawConnection(port: Self.port(base))
            connection.send(
                "POST /claims HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
            )
            connection.send(Data(repeating: UInt8(ascii: "a"), count: 64 * 1024))
            let reply = connection.read(timeout: 0.9)
            #expect(reply.text.hasPrefix("HTTP/1.1 401"), "\(reply.text.prefix(200))")
            #expect(reply.closed, "the refused connection was left open with its body unread")
        }
    }

    @Test func atTheConnectionCapANewClientTakesThePlaceOfTheLongestIdleOne() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(
                h,
                extraHTTP: #", "max_connections": 20, "header_timeout_seconds": 60, "idle_timeout_seconds": 60"#
            )
            defer { _ = daemon.terminate() }
            let idle = try (0..<40).map { _ in try RawConnection(port: Self.port(base)) }
            Thread.sleep(forTimeInterval: 0.3)
            let start = Date()
            let health = try HTTPEndpointTests.get(base + "/healthz")
            #expect(health.status == 200)
            #expect(Date().timeIntervalSince(start) < 1, "healthz waited behind idle connections")
            // The first ones were closed to make room for the later ones.
            #expect(idle[0].secondsUntilClosed(timeout: 2) != nil)
        }
    }

    @Test func aConnectionCapPerAddressLeavesOtherAddressesServed() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(
                h,
                extraHTTP: #", "max_connections_per_address": 5, "header_timeout_seconds": 60"#
            )
            defer { _ = daemon.terminate() }
            let hostile = try (0..<6).map { _ in try RawConnection(port: Self.port(base), source: "127.0.0.7") }
            Thread.sleep(forTimeInterval: 0.5)
            // Whichever was admitted last of the six, exactly one was closed.
            let closed = hostile.filter { $0.secondsUntilClosed(timeout: 0.3) != nil }
            #expect(closed.count == 1, "\(closed.count) of 6 connections from one address were closed")
            #expect(try HTTPEndpointTests.get(base + "/healthz").status == 200)
        }
    }

    @Test func headAnswersEveryGetRouteAndOtherMethodsGet405WithAllow() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            let client = CurlEasyClient()
            let head = try RawConnection(port: Self.port(base))
            head.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let answer = head.read(timeout: 2, until: "\r\n\r\n").text
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.hasSuffix("\r\n\r\n"), "\(answer)")
            // No body follows the head: the next request on the connection is answered at once.
            head.send("HEAD /c/AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(head.read(timeout: 2, until: "\r\n\r\n").text.hasPrefix("HTTP/1.1 404"))
            let post = try client.perform(HTTPRequest(method: "POST", url: base + "/healthz", body: Data()))
            #expect(post.status == 405 && post.headers["allow"] == "GET, HEAD", "\(post.headers)")
            let get = try client.perform(HTTPRequest(url: base + "/claims"))
            #expect(get.status == 405 && get.headers["allow"] == "POST", "\(get.headers)")
            let delete = try client.perform(HTTPRequest(method: "DELETE", url: base + "/u/abc"))
            #expect(delete.status == 405 && delete.headers["allow"] == "GET, HEAD, POST", "\(delete.headers)")
            #expect(try client.perform(HTTPRequest(url: base + "/nowhere")).status == 404)
        }
    }

    @Test func stalledReportDownloadsAreCappedAndClosedAndTheListenerKeepsAnswering() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(
                h,
                extraHTTP: #", "max_report_downloads": 2, "write_timeout_seconds": 3"#
            )
            defer { _ = daemon.terminate() }
            let customers = 30000
            let send = try HTTPEndpointTests.finishedSend(h, members: customers, withoutConsent: customers)
            let installation: String = try h.db.connection.queryRow("SELECT id FROM coupond.installation")!.decode("id")
            let finished: Date = try h.send(send).decode("finished_at")
            let link = ReportLinkSigner(key: Data(repeating: 9, count: 32), baseURL: base)
                .link(sendID: send, finishedAt: finished, installation: installation)
            let path = String(link.dropFirst(base.count))
            // Two clients ask for the report and read nothing.
            let stalled = try (0..<2).map { _ in
                let connection = try RawConnection(port: Self.port(base), receiveBuffer: 4096)
                connection.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
                return connection
            }
            Thread.sleep(forTimeInterval: 0.5)
            let third = try HTTPEndpointTests.get(link)
            #expect(third.status == 503 && third.headers["retry-after"] == "30", "\(third.status)")
            let start = Date()
            #expect(try HTTPEndpointTests.get(base + "/healthz").status == 200)
            #expect(try HTTPEndpointTests.get(base + "/readyz").status == 200)
            #expect(Date().timeIntervalSince(start) < 1)
            // At the write deadline the stalled downloads are closed, and their slots and connections come back.
            for connection in stalled {
                #expect(connection.isDropped(within: 10), "a stalled download was never closed")
            }
            #expect(try eventually(timeout: 5) { try HTTPEndpointTests.get(link).status == 200 })
            #expect(!daemon.stderr.contains(" error coupond:"), "\(daemon.stderr.suffix(1500))")
        }
    }

    @Test func aCleanStopWithConnectionsOpenLogsNothingAtErrorLevel() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h)
            let kept = try RawConnection(port: Self.port(base))
            kept.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(kept.read(timeout: 5, until: "ok\n").text.hasPrefix("HTTP/1.1 200"))
            let idle = try RawConnection(port: Self.port(base))
            _ = idle
            #expect(daemon.terminate() == 0)
            let errors = daemon.stderr.split(separator: "\n").filter { $0.contains(" error coupond:") }
            #expect(errors.isEmpty, "\(errors)")
        }
    }
}

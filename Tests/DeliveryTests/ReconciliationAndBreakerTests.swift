import Curl
import Delivery
import Foundation
import Synchronization
import Testing

@Suite struct ReconciliationAndBreakerTests {
    let twilio = TwilioGateway(
        endpoint: GatewayEndpoint(url: "https://api.twilio.com/", credential: "auth-token", from: "+15005550006"),
        accountSID: "AC0123456789abcdef0123456789abcdef"
    )
    let probe = DeliveryProbe(to: "+15551230001", marker: "7.42.abc", since: Date(timeIntervalSince1970: 1_800_000_000))

    func list(_ messages: [(to: String, body: String, created: String)], next: String? = nil) -> HTTPResponse {
        let items = messages.map {
            #"{"sid":"SM\#($0.body.count)","to":"\#($0.to)","body":"\#($0.body)","date_created":"\#($0.created)"}"#
        }
        let nextField = next.map { #""\#($0)""# } ?? "null"
        let body = #"{"messages":[\#(items.joined(separator: ","))],"next_page_uri":\#(nextField)}"#
        return HTTPResponse(status: 200, headers: [:], body: Data(body.utf8))
    }

    @Test func twilioIsAskedForTheNumbersMessagesWithoutADateThatWouldMissQueuedOnes() {
        let request = twilio.lookupRequest(for: probe)
        #expect(request.method == "GET")
        #expect(
            request.url
                == "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
                + "?To=%2B15551230001&PageSize=1000"
        )
        #expect(request.body == nil)
        #expect(request.headers.contains { $0.name == "Authorization" && $0.value.hasPrefix("Basic ") })
    }

    @Test func aListedMessageToTheNumberWithTheMarkerIsFound() {
        let response = list([
            (
                to: "+15551230001", body: "Hi, your link https://x/c?t=7.41.zzz",
                created: "Sat, 28 Nov 2026 13:00:00 +0000"
            ),
            (
                to: "+15551230001", body: "Hi, your link https://x/c?t=7.42.abc",
                created: "Sat, 28 Nov 2026 13:00:00 +0000"
            ),
        ])
        guard case .found(let id) = twilio.lookupVerdict(for: response, probe: probe) else {
            Issue.record("the message with the marker should be found")
            return
        }
        #expect(id == "SM\("Hi, your link https://x/c?t=7.42.abc".count)")
    }

    @Test func theMarkerToAnotherNumberOrOnlyOlderMessagesAreNotFound() {
        let elsewhere = list([(to: "+15550000000", body: "t=7.42.abc", created: "Sat, 28 Nov 2026 13:00:00 +0000")])
        #expect(twilio.lookupVerdict(for: elsewhere, probe: probe) == .notFound)
        // The page is older than the send: the next one cannot hold the message.
        let old = list(
            [(to: "+15551230001", body: "old", created: "Mon, 01 Jan 2024 10:00:00 +0000")],
            next: "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json?Page=1"
        )
        #expect(twilio.lookupVerdict(for: old, probe: probe) == .notFound)
    }

    @Test func aFurtherPageIsReadWhileThePageIsNewerThanTheSendAndAnErrorIsNotANo() {
        let page = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json?Page=1"
        let recent = list([(to: "+15551230001", body: "other", created: "Mon, 01 Jan 2035 10:00:00 +0000")], next: page)
        #expect(twilio.lookupVerdict(for: recent, probe: probe) == .nextPage(url: page))
        #expect(twilio.lookupRequest(page: page).url == "https://api.twilio.com" + page)
        let failed = HTTPResponse(status: 503, headers: [:], body: Data())
        guard case .unavailable = twilio.lookupVerdict(for: failed, probe: probe) else {
            Issue.record("a 503 must not read as 'not sent'")
            return
        }
        let garbled = HTTPResponse(status: 200, headers: [:], body: Data("<html>".utf8))
        guard case .unavailable = twilio.lookupVerdict(for: garbled, probe: probe) else {
            Issue.record("an unreadable list must not read as 'not sent'")
            return
        }
    }

    @Test func onlyTheWebhooksDropRepeats() {
        let endpoint = GatewayEndpoint(url: "http://127.0.0.1/", credential: "t", from: "a@b.example")
        #expect(WebhookEmailGateway(endpoint: endpoint).isIdempotent)
        #expect(WebhookSMSGateway(endpoint: endpoint).isIdempotent)
        #expect(!SendGridGateway(endpoint: endpoint).isIdempotent)
        #expect(!twilio.isIdempotent)
    }

    @Test func theBreakerOpensAfterFailuresInARowAndHoldsRequestsUntilAProbe() {
        let changes = Mutex<[Bool]>([])
        let breaker = CircuitBreaker(threshold: 3, firstProbeInterval: .milliseconds(200)) { snapshot in
            changes.withLock { $0.append(snapshot.isOpen) }
        }
        #expect(breaker.admit(now: .now) == nil)
        breaker.recordFailure("HTTP 503")
        breaker.recordSuccess()
        breaker.recordFailure("HTTP 503")
        breaker.recordFailure("HTTP 503")
        #expect(!breaker.snapshot.isOpen, "a success in between starts the count again")
        breaker.recordFailure("connection refused")
        #expect(breaker.snapshot.isOpen)
        #expect(breaker.snapshot.lastError == "connection refused")
        let now = ContinuousClock.now
        guard let until = breaker.admit(now: now) else {
            Issue.record("an open breaker must hold requests")
            return
        }
        #expect(until > now)
        // At the probe time one request goes, and only one.
        #expect(breaker.admit(now: now + .milliseconds(250)) == nil)
        #expect(breaker.admit(now: now + .milliseconds(260)) != nil)
        // The probe fails: the next one is further off.
        let probeFailed = ContinuousClock.now
        breaker.recordFailure("HTTP 503")
        #expect(breaker.admit(now: probeFailed + .milliseconds(300)) != nil)
        #expect(breaker.admit(now: ContinuousClock.now + .milliseconds(450)) == nil)
        breaker.recordSuccess()
        #expect(!breaker.snapshot.isOpen)
        #expect(breaker.admit(now: .now) == nil)
        #expect(changes.withLock { $0 } == [true, false])
    }
}

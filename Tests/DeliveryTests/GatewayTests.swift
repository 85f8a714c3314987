import Crypto
import Curl
import Delivery
import Foundation
import Signing
import Testing

@Suite struct GatewayTests {
    let endpoint = GatewayEndpoint(url: "https://api.twilio.com", credential: "auth-token", from: "+15005550006")

    @Test func twilioRequestsAreFormEncodedWithBasicAuthAndIdempotencyToken() throws {
        let gateway = TwilioGateway(endpoint: endpoint, accountSID: "AC0123456789abcdef0123456789abcdef")
        let request = gateway.request(
            for: OutgoingMessage(to: "+4915112345678", content: .sms(text: "Hi & bye"), idempotencyKey: "k-1")
        )
        #expect(
            request.url == "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
        )
        let body = String(decoding: try #require(request.body), as: UTF8.self)
        #expect(body == "To=%2B4915112345678&From=%2B15005550006&Body=Hi%20%26%20bye")
        let headers = Dictionary(uniqueKeysWithValues: request.headers.map { ($0.name, $0.value) })
        #expect(
            headers["Authorization"] == "Basic "
                + Data("AC0123456789abcdef0123456789abcdef:auth-token".utf8).base64EncodedString()
        )
        #expect(headers["I-Twilio-Idempotency-Token"] == "k-1")
    }

    @Test(arguments: [
        ("MGMOutlet", "From=MGMOutlet"), ("MG0123456789abcdef0123456789ABCDEF", "MessagingServiceSid=MG0123456789"),
        ("+15005550006", "From=%2B15005550006"),
    ])
    func onlyAMessagingServiceSIDIsSentAsOne(sender: String, expected: String) throws {
        let gateway = TwilioGateway(
            endpoint: GatewayEndpoint(url: "https://api.twilio.com", credential: "t", from: sender),
            accountSID: "AC0123456789abcdef0123456789abcdef"
        )
        let request = gateway.request(
            for: OutgoingMessage(to: "+4915112345678", content: .sms(text: "Hi"), idempotencyKey: "k")
        )
        let body = String(decoding: try #require(request.body), as: UTF8.self)
        #expect(body.contains(expected), "\(body)")
    }

    @Test func sendGridCarriesTheKeyInThePersonalizationsCustomArgs() throws {
        let gateway = SendGridGateway(
            endpoint: GatewayEndpoint(url: "https://x/v3/mail/send", credential: "k", from: "a@b")
        )
        let request = gateway.request(
            for: OutgoingMessage(
                to: "ann@mail.example",
                content: .email(subject: "S", html: "<p>H</p>", text: "T"),
                idempotencyKey: "k-9"
            )
        )
        let body = try #require(request.body)
        let json = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        #expect(json["custom_args"] == nil, "SendGrid types the top-level custom_args as a string")
        let personalization = try #require((json["personalizations"] as? [[String: Any]])?.first)
        #expect((personalization["custom_args"] as? [String: String])?["idempotency_key"] == "k-9")
        #expect((personalization["to"] as? [[String: String]])?.first?["email"] == "ann@mail.example")
    }

    @Test func jsonBodiesEscapeWhatJSONRequiresAndKeepTheRest() throws {
        let gateway = WebhookEmailGateway(endpoint: GatewayEndpoint(url: "http://x/", credential: "t", from: "a@b"))
        let tricky = "Quote \" backslash \\ line\nbreak\ttab \u{01} café 🎟 </script>"
        let request = gateway.request(
            for: OutgoingMessage(
                to: "ann@mail.example",
                content: .email(subject: tricky, html: "<p>\(tricky)</p>", text: tricky),
                idempotencyKey: "k-\u{7F}"
            )
        )
        let body = try #require(request.body)
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: String])
        #expect(object["subject"] == tricky)
        #expect(object["html"] == "<p>\(tricky)</p>")
        #expect(object["idempotency_key"] == "k-\u{7F}")
        #expect(object["from"] == "a@b" && object["to"] == "ann@mail.example")
    }

    @Test func answersAreReadByTopLevelFieldWhateverElseTheyHold() {
        let gateway = WebhookSMSGateway(endpoint: endpoint)
        let body = #"{"meta":{"id":"nested","list":[1,{"id":"x"}]},"note":"say \"hi\"","id":"m\"1\u00e9","segments":3}"#
        let verdict = gateway.verdict(for: HTTPResponse(status: 200, headers: [:], body: Data(body.utf8)))
        #expect(verdict == .accepted(messageID: "m\"1é", segments: 3))
        let notJSON = HTTPResponse(status: 200, headers: [:], body: Data("accepted".utf8))
        #expect(gateway.verdict(for: notJSON) == .accepted(messageID: nil, segments: nil))
    }

    @Test func twilioVerdicts() {
        let gateway = TwilioGateway(endpoint: endpoint, accountSID: "AC0123456789abcdef0123456789abcdef")
        let accepted = HTTPResponse(status: 201, headers: [:], body: Data(#"{"sid":"SM1","num_segments":"2"}"#.utf8))
        #expect(gateway.verdict(for: accepted) == .accepted(messageID: "SM1", segments: 2))
        let invalid = HTTPResponse(status: 400, headers: [:], body: Data(#"{"code":21211,"message":"bad"}"#.utf8))
        guard case .refused(.invalidMobileNumber, _) = gateway.verdict(for: invalid) else {
            Issue.record("21211 should mean an invalid number")
            return
        }
        let busy = HTTPResponse(status: 429, headers: ["retry-after": "3"], body: Data())
        guard case .throttled(after: 3, _) = gateway.verdict(for: busy) else {
            Issue.record("429 should be throttled until Retry-After")
            return
        }
        guard case .retry(after: nil, _) = gateway.verdict(for: HTTPResponse(status: 502, headers: [:], body: Data()))
        else {
            Issue.record("502 should be retried")
            return
        }
    }

    @Test func sendGridRequestsCarryTextBeforeHTMLAndReadTheMessageID() throws {
        let gateway = SendGridGateway(
            endpoint: GatewayEndpoint(
                url: "https://api.sendgrid.com/v3/mail/send",
                credential: "SG.key",
                from: "a@b.example"
            )
        )
        let request = gateway.request(
            for: OutgoingMessage(
                to: "ann@mail.example",
                content: .email(subject: "S", html: "<p>H</p>", text: "T"),
                idempotencyKey: "k-2"
            )
        )
        let body = try #require(request.body)
        let json = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        let content = try #require(json["content"] as? [[String: String]])
        #expect(content.map { $0["type"] } == ["text/plain", "text/html"])
        #expect(request.headers.contains { $0.name == "Authorization" && $0.value == "Bearer SG.key" })
        let accepted = HTTPResponse(status: 202, headers: ["x-message-id": "abc"], body: Data())
        #expect(gateway.verdict(for: accepted) == .accepted(messageID: "abc", segments: nil))
        guard
            case .refused(.gatewayRefused, _) = gateway.verdict(
                for: HTTPResponse(status: 400, headers: [:], body: Data())
            )
        else {
            Issue.record("400 should be a refusal")
            return
        }
    }

    @Test func theWebhooksBatchFormCarriesTheContentOnceAndEachRecipientsOwnValues() throws {
        let gateway = WebhookEmailGateway(endpoint: GatewayEndpoint(url: "http://x/", credential: "t", from: "a@b"))
        let request = gateway.batchRequest(
            subject: "Hi -coupond_name-",
            html: "<a href=\"-coupond_link-\">",
            text: "-coupond_link-",
            recipients: [
                BatchEmailRecipient(
                    to: "ann@mail.example",
                    idempotencyKey: "k-1",
                    substitutions: ["-coupond_name-": "Ann", "-coupond_link-": "https://l/1"]
                ),
                BatchEmailRecipient(
                    to: "bob@mail.example",
                    idempotencyKey: "k-2",
                    substitutions: ["-coupond_name-": "Bob \"B\"", "-coupond_link-": "https://l/2"]
                ),
            ],
            idempotencyKey: "batch-1"
        )
        let body = try #require(request.body)
        let json = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        #expect(json["subject"] as? String == "Hi -coupond_name-")
        #expect(json["idempotency_key"] as? String == "batch-1")
        #expect(request.headers.contains { $0.name == "Idempotency-Key" && $0.value == "batch-1" })
        let recipients = try #require(json["recipients"] as? [[String: Any]])
        #expect(recipients.map { $0["to"] as? String } == ["ann@mail.example", "bob@mail.example"])
        #expect(recipients.map { $0["idempotency_key"] as? String } == ["k-1", "k-2"])
        let bob = try #require(recipients[1]["substitutions"] as? [String: String])
        #expect(bob == ["-coupond_name-": "Bob \"B\"", "-coupond_link-": "https://l/2"])
    }

    @Test func backoffGrowsWithJitterAndRetryAfterWins() {
        let policy = RetryPolicy(maxAttempts: 5, initialBackoff: 0.2, maxBackoff: 1, maxRetryAfter: 60)
        for attempt in 1...6 {
            let ceiling = min(1, 0.2 * pow(2, Double(attempt - 1)))
            let delay = policy.delay(afterAttempt: attempt, retryAfter: nil)
            #expect(delay >= 0 && delay <= ceiling)
        }
        #expect(policy.delay(afterAttempt: 1, retryAfter: 7) == 7)
        #expect(policy.delay(afterAttempt: 1, retryAfter: 600) == 60)
    }

    @Test func aMessageMayBeRetriedWithinItsBudgetAndUnderItsCap() {
        let budgetOnly = RetryPolicy(budget: 900)
        #expect(budgetOnly.allowsRetry(failures: 50, elapsed: 600, delay: 10))
        #expect(!budgetOnly.allowsRetry(failures: 1, elapsed: 895, delay: 10))
        let capped = RetryPolicy(maxAttempts: 3, budget: 900)
        #expect(capped.allowsRetry(failures: 2, elapsed: 1, delay: 1))
        #expect(!capped.allowsRetry(failures: 3, elapsed: 1, delay: 1))
    }

    @Test func theRateLimiterSpacesTokens() {
        let limiter = RateLimiter(ratePerSecond: 10, burst: 2)
        let start = ContinuousClock.now
        #expect(limiter.acquire(now: start) == nil)
        #expect(limiter.acquire(now: start) == nil)
        let next = limiter.acquire(now: start)
        #expect(next != nil)
        if let next { #expect(next - start > .milliseconds(90) && next - start < .milliseconds(110)) }
        #expect(limiter.acquire(now: start.advanced(by: .milliseconds(100))) == nil)
    }
}

@Suite struct SigningTests {
    @Test func claimTokensAreStablePerCustomerAndUnguessableWithoutTheKey() {
        let issuer = ClaimTokenIssuer(key: Data(repeating: 1, count: 32))
        let token = issuer.token(sendID: 5, customerID: 9)
        #expect(token == issuer.token(sendID: 5, customerID: 9))
        #expect(token != issuer.token(sendID: 5, customerID: 10))
        #expect(token != ClaimTokenIssuer(key: Data(repeating: 2, count: 32)).token(sendID: 5, customerID: 9))
        #expect(token.hasPrefix("5.9.") && token.count == 4 + 43, "\(token)")
        #expect(token.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
        #expect(ClaimTokenIssuer.hash(token).count == 32)
    }

    @Test func claimTokensAreTheHMACOfTheirSendAndCustomerWhateverCameBefore() {
        let key = Data((0..<48).map { UInt8($0) })
        let issuer = ClaimTokenIssuer(key: key)
        // Each token is computed after others, as in a batch: none may carry state into the next.
        for (send, customer) in [(Int64(1), Int64(1)), (1, 2), (7, 123_456_789), (1, 1)] {
            let expected = HMAC<SHA256>.authenticationCode(
                for: Data("claim:\(send):\(customer)".utf8),
                using: SymmetricKey(data: key)
            )
            #expect(
                issuer.token(sendID: send, customerID: customer) == "\(send).\(customer)."
                    + Data(expected).base64URLEncoded()
            )
        }
    }

    @Test func reportLinksVerifyUntilTheyExpire() throws {
        let signer = ReportLinkSigner(key: Data(repeating: 3, count: 32), baseURL: "https://coupond.example/")
        let finished = Date(timeIntervalSince1970: 1_800_000_000)
        let installation = "0123456789abcdef"
        let link = signer.link(sendID: 42, finishedAt: finished, installation: installation)
        #expect(link.hasPrefix("https://coupond.example/reports/42?expires="))
        #expect(try signer.verify(link, installation: installation, now: finished.addingTimeInterval(6 * 86400)) == 42)
        #expect(throws: ReportLinkSigner.Refusal.expired(finished.addingTimeInterval(7 * 86400))) {
            try signer.verify(link, installation: installation, now: finished.addingTimeInterval(7 * 86400 + 1))
        }
        let forged = link.replacingOccurrences(of: "/reports/42", with: "/reports/43")
        #expect(throws: ReportLinkSigner.Refusal.badSignature) {
            try signer.verify(forged, installation: installation, now: finished)
        }
        #expect(throws: ReportLinkSigner.Refusal.malformed) {
            try signer.verify("https://x/reports/abc", installation: installation, now: finished)
        }
        let other = ReportLinkSigner(key: Data(repeating: 4, count: 32), baseURL: "https://coupond.example")
        #expect(throws: ReportLinkSigner.Refusal.badSignature) {
            try other.verify(link, installation: installation, now: finished)
        }
        // The same key and send number in another installation (staging beside production) opens nothing here.
        #expect(throws: ReportLinkSigner.Refusal.badSignature) {
            try signer.verify(link, installation: "fedcba9876543210", now: finished)
        }
    }
}

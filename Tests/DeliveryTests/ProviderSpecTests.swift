import Curl
import Delivery
import Foundation
import Testing

/// The requests Coupond builds, held to extracts of the providers' own API descriptions (`ProviderSpecs/`).
@Suite struct ProviderSpecTests {
    let twilioSpec: SpecExtract
    let sendGridSpec: SpecExtract

    init() throws {
        twilioSpec = try SpecExtract("twilio-create-message")
        sendGridSpec = try SpecExtract("sendgrid-mail-send")
    }

    func twilio(from: String) -> TwilioGateway {
        TwilioGateway(
            endpoint: GatewayEndpoint(url: "https://api.twilio.com", credential: "token", from: from),
            accountSID: "AC0123456789abcdef0123456789abcdef"
        )
    }

    func sms(_ gateway: TwilioGateway, text: String = "Shop: a coupon for you. Claim it: https://x.example/c?t=1.2.abc")
        -> [String: Any]
    {
        let request = gateway.request(
            for: OutgoingMessage(to: "+15551230001", content: .sms(text: text), idempotencyKey: "coupond-k")
        )
        return SpecExtract.form(String(decoding: request.body ?? Data(), as: UTF8.self))
    }

    @Test(arguments: ["+15005550006", "MGMOutlet", "MG0123456789abcdef0123456789abcdef"])
    func twilioMessagesConformToCreateMessage(sender: String) {
        let form = sms(twilio(from: sender))
        #expect(twilioSpec.violations(of: form, against: twilioSpec.schema("request")) == [])
    }

    @Test func anAlphanumericSenderStartingWithMGWouldBreakTheMessagingServicePattern() {
        // What the request would be had "MGMOutlet" gone as a Messaging Service, as it once did.
        let wrong: [String: Any] = ["To": "+15551230001", "MessagingServiceSid": "MGMOutlet", "Body": "hi"]
        #expect(!twilioSpec.violations(of: wrong, against: twilioSpec.schema("request")).isEmpty)
        #expect(sms(twilio(from: "MGMOutlet"))["From"] as? String == "MGMOutlet")
    }

    @Test func twilioDeclaresNoIdempotencyParameterAndLimitsTheBodyTo1600Characters() {
        let properties = (twilioSpec.schema("request")["properties"] as? [String: Any] ?? [:]).keys
        #expect(!properties.contains { $0.lowercased().contains("idempot") })
        let long = sms(twilio(from: "+15005550006"), text: String(repeating: "a", count: 1601))
        #expect(twilioSpec.violations(of: long, against: twilioSpec.schema("request")) == ["$.Body: longer than 1600"])
    }

    @Test func theAccountSIDCheckIsTheSpecificationsPattern() {
        for sid in ["AC0123456789abcdef0123456789abcdef", "ACtest", "AC0123456789abcdef0123456789abcdeg"] {
            let conforms = twilioSpec.violations(of: sid, against: twilioSpec.schema("accountSid")).isEmpty
            #expect(TwilioGateway.isAccountSID(sid) == conforms, "\(sid)")
        }
    }

    @Test func theReconciliationListQueryUsesOnlyListMessageParameters() {
        let gateway = twilio(from: "+15005550006")
        let request = gateway.lookupRequest(
            for: DeliveryProbe(to: "+15551230001", marker: "1.2.abc", since: Date(timeIntervalSince1970: 0))
        )
        let query = SpecExtract.form(String(request.url.split(separator: "?", maxSplits: 1)[1]))
        #expect(twilioSpec.violations(of: query, against: twilioSpec.schema("listQuery")) == [])
        #expect(query["To"] as? String == "+15551230001")
    }

    func sendGridBody(_ request: HTTPRequest) throws -> Any {
        try JSONSerialization.jsonObject(with: request.body ?? Data())
    }

    @Test func sendGridMessagesAndBatchesConformToMailSend() throws {
        let gateway = SendGridGateway(
            endpoint: GatewayEndpoint(
                url: "https://api.sendgrid.com/v3/mail/send",
                credential: "k",
                from: "a@shop.example"
            )
        )
        let single = gateway.request(
            for: OutgoingMessage(
                to: "c@example.com",
                content: .email(subject: "10% off", html: "<p>Hi</p>", text: "Hi"),
                idempotencyKey: "coupond-k"
            )
        )
        #expect(sendGridSpec.violations(of: try sendGridBody(single), against: sendGridSpec.schema("request")) == [])
        let recipients = (1...1000).map {
            BatchEmailRecipient(
                to: "c\($0)@example.com",
                idempotencyKey: "coupond-\($0)",
                substitutions: ["-n-": "C\($0)"]
            )
        }
        let batch = gateway.batchRequest(
            subject: "10% off, -n-",
            html: "<p>Hi -n-</p>",
            text: "Hi -n-",
            recipients: recipients,
            idempotencyKey: "coupond-batch"
        )
        #expect(sendGridSpec.violations(of: try sendGridBody(batch), against: sendGridSpec.schema("request")) == [])
    }

    @Test func sendGridsTopLevelCustomArgsIsTextSoTheKeyGoesInThePersonalization() {
        let topLevel: [String: Any] = [
            "personalizations": [["to": [["email": "c@example.com"]]]],
            "from": ["email": "a@shop.example"],
            "custom_args": ["idempotency_key": "coupond-k"],
        ]
        let faults = sendGridSpec.violations(of: topLevel, against: sendGridSpec.schema("request"))
        #expect(faults.count == 1 && faults[0].hasPrefix("$.custom_args: expected string"), "\(faults)")
    }
}

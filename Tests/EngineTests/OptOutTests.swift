import Curl
import Foundation
import Postgres
import Signing
import Storage
import TestSupport
import Testing

/// Opt-outs: a STOP reply to an SMS, forwarded by the gateway, keeps every later send's SMS from that customer.
@Suite(.serialized) struct OptOutTests {
    static let gatewayToken = "gateway-secret-token-123"

    static func reply(_ base: String, body: String, headers: [(String, String)]) throws -> HTTPResponse {
        try CurlEasyClient().perform(
            HTTPRequest(method: "POST", url: base + "/sms/replies", headers: headers, body: Data(body.utf8))
        )
    }

    @Test func aStopReplyOptsTheNumberOutAndTheNextSendFailsItsSMSAsUnsubscribed() throws {
        try EngineHarness.with { h in
            let (daemon, base) = try HTTPEndpointTests.startWithEndpoints(h)
            defer { _ = daemon.terminate() }
            let group = try h.fixtures.group(shop: h.shop, members: 3)
            let stopper: Int64 = try h.db.connection.queryRow(
                "SELECT min(customer_id) AS id FROM coupond.group_members WHERE group_id = \(group)"
            )!.decode("id")
            let mobile = try h.db.connection.queryRow("SELECT mobile FROM coupond.customers WHERE id = \(stopper)")![
                "mobile"
            ]!
            let json = [("Content-Type", "application/json")]
            #expect(
                try Self.reply(base, body: #"{"from": "\#(mobile)", "text": "STOP"}"#, headers: json).status == 401
            )
            let stop = try Self.reply(
                base,
                body: #"{"from": "\#(mobile)", "text": " stop "}"#,
                headers: json + [("Authorization", "Bearer \(Self.gatewayToken)")]
            )
            #expect(stop.status == 200)
            let source = try h.db.connection.queryRow(
                "SELECT source FROM coupond.opt_outs WHERE customer_id = \(stopper) AND channel = 'sms'"
            )?["source"]
            #expect(source == "sms_stop")

            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop, unlimited))
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done")
            let row = try h.db.connection.queryRow(
                """
                SELECT email_status, sms_status, sms_error FROM coupond.send_recipients
                WHERE send_id = \(send) AND customer_id = \(stopper)
                """
            )
            #expect(row?["email_status"] == "sent" && row?["sms_status"] == "failed")
            #expect(row?["sms_error"] == "unsubscribed")
            #expect(!(try h.messages()).contains { $0["channel"] as? String == "sms" && $0["to"] as? String == mobile })
            var report: [String] = []
            try FailureReport.rows(sendID: send, on: h.db.connection) {
                report.append($0.compactMap { $0 }.joined(separator: ","))
            }
            #expect(
                report == [
                    "\(stopper),\(try h.db.connection.queryRow("SELECT email FROM coupond.customers WHERE id = \(stopper)")!["email"]!),\(mobile),sms,Unsubscribed: the customer opted out of this channel"
                ],
                "\(report)"
            )

            // START opts them back in.
            let start = try Self.reply(
                base,
                body: #"{"from": "\#(mobile)", "text": "START"}"#,
                headers: json + [("Authorization", "Bearer \(Self.gatewayToken)")]
            )
            #expect(start.status == 200)
            let left: Int = try h.db.connection.queryRow("SELECT count(*)::int AS n FROM coupond.opt_outs")!.decode("n")
            #expect(left == 0)
        }
    }

    @Test func twilioRepliesMustCarryTheAccountsSignature() throws {
        try EngineHarness.with { h in
            let keyFile = h.folder.appendingPathComponent("claims-key")
            try Data(HTTPEndpointTests.claimsKey.utf8).write(to: keyFile)
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "webhook",
                    smsProvider: "twilio",
                    http: #""listen": "127.0.0.1:0""#
                )
            )
            defer { _ = daemon.terminate() }
            var address: String?
            #expect(
                eventually(timeout: 30) {
                    address = daemon.stderr.range(of: "http.address=").map {
                        String(daemon.stderr[$0.upperBound...].prefix { !$0.isWhitespace })
                    }
                    return address != nil
                }
            )
            let base = "http://\(address ?? "")"
            let customer = try h.fixtures.group(shop: h.shop, members: 1)
            let mobile = try h.db.connection.queryRow(
                "SELECT c.mobile FROM coupond.customers c JOIN coupond.group_members m ON m.customer_id = c.id WHERE m.group_id = \(customer)"
            )!["mobile"]!
            let parameters = [
                (name: "From", value: mobile), (name: "Body", value: "Stop"), (name: "To", value: "+15005550006"),
            ]
            let body = parameters.map {
                "\($0.name)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
            }.joined(separator: "&")
            let form = [("Content-Type", "application/x-www-form-urlencoded")]
            let signature = TwilioRequestSignature.signature(
                url: "https://coupond.example/sms/replies",
                parameters: parameters,
                authToken: Self.gatewayToken
            )
            let forged = try Self.reply(
                base,
                body: body,
                headers: form + [("X-Twilio-Signature", "AAAA" + signature.dropFirst(4))]
            )
            #expect(forged.status == 403)
            let signed = try Self.reply(base, body: body, headers: form + [("X-Twilio-Signature", signature)])
            #expect(signed.status == 200, "\(String(decoding: signed.body, as: UTF8.self))")
            #expect(signed.headers["content-type"] == "text/xml")
            let count: Int = try h.db.connection.queryRow("SELECT count(*)::int AS n FROM coupond.opt_outs")!.decode(
                "n"
            )
            #expect(count == 1)
        }
    }
}

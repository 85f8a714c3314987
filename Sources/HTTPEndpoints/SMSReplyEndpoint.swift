import Foundation
import Hummingbird
import Logging
import NIOCore
import Postgres
import Signing

/// How `POST /sms/replies` knows a reply comes from the SMS gateway.
public enum SMSReplyAuthentication: Sendable {
    /// Twilio's `X-Twilio-Signature` over `publicURL` (the URL Twilio is told to call) and the form's parameters.
    case twilio(authToken: String, publicURL: String)
    /// The SMS webhook's own bearer token: the credential Coupond sends to that gateway.
    case bearer(token: String)
}

/// `POST /sms/replies`: a customer's reply to an SMS, as the gateway forwards it. STOP (and STOPALL, UNSUBSCRIBE,
/// CANCEL, END, QUIT) opts every customer with that number out of SMS; START (UNSTOP, YES) opts them back in
/// (`coupond.sms_reply`). Twilio posts a form (`From`, `Body`) signed with the account's auth token; the SMS webhook
/// posts JSON `{"from", "text"}` with its bearer token.
extension Endpoints {
    func smsReply(_ request: Request) async throws -> Response {
        guard let authentication = dependencies.smsReplies else {
            return Self.text(.notFound, "SMS replies are not served here\n")
        }
        var request = request
        let body = String(buffer: try await request.collectBody(upTo: 64 * 1024))
        let reply: (from: String, text: String)?
        switch authentication {
        case .twilio(let authToken, let publicURL):
            let parameters = Self.formParameters(body)
            guard
                let signature = request.headers.first(where: { $0.name.canonicalName == "x-twilio-signature" })?.value,
                TwilioRequestSignature.isValid(signature, url: publicURL, parameters: parameters, authToken: authToken)
            else { return Self.text(.forbidden, "the request is not signed by this Twilio account\n") }
            let values = Dictionary(parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
            reply = values["From"].map { ($0, values["Body"] ?? "") }
        case .bearer(let token):
            let presented = request.headers[.authorization].flatMap { header -> Substring? in
                header.hasPrefix("Bearer ") ? header.dropFirst("Bearer ".count) : nil
            }
            guard let presented, ConstantTime.equal(Array(presented.utf8), Array(token.utf8)) else {
                return Self.text(.unauthorized, "send the SMS gateway's token as Authorization: Bearer <token>\n")
            }
            let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            reply = (json?["from"] as? String).map { ($0, json?["text"] as? String ?? "") }
        }
        guard let reply else { return Self.text(.badRequest, "a reply needs the number it came from\n") }
        let changed = try await database.run { connection -> Int in
            try connection.queryRow("SELECT coupond.sms_reply(\(reply.from), \(reply.text)) AS changed")?
                .decode("changed") ?? 0
        }
        if changed > 0 {
            logger.notice("sms reply changed opt-outs", metadata: ["customers": "\(changed)"])
        }
        // Twilio wants TwiML back; an empty response sends no reply of ours (its own STOP handling answers).
        return Self.text(.ok, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>\n", type: "text/xml")
    }

    /// The parameters of an `application/x-www-form-urlencoded` body, in order.
    static func formParameters(_ body: String) -> [(name: String, value: String)] {
        body.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text)
            }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }
}

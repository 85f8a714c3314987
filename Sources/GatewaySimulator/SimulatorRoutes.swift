import Foundation
import NIOHTTP1
import WireJSON

/// The simulator's routes: which API a request speaks, and what the fault plan makes of it.
enum SimulatorRoutes {
    /// The reply, and the milliseconds to hold it back (a delay fault), for one complete request.
    static func handle(head: HTTPRequestHead, body: Data, ledger: SimulatorLedger) -> (SimulatorReply, Int?) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        switch (head.method, path) {
        case (.POST, "/webhook/email"):
            let json = JSONValue(parsing: body)
            let key = head.headers.first(name: "Idempotency-Key") ?? json?["idempotency_key"]?.string ?? ""
            if let recipients = json?["recipients"] {
                return batch(
                    ledger,
                    api: "webhook",
                    key: key,
                    subject: json?["subject"]?.string,
                    text: json?["text"]?.string ?? "",
                    html: json?["html"]?.string,
                    recipients: recipients.elements.map {
                        BatchRecipient(
                            to: $0["to"]?.string ?? "",
                            key: $0["idempotency_key"]?.string ?? "",
                            substitutions: $0["substitutions"],
                            headers: $0["headers"]
                        )
                    }
                ) { id, _ in .json { $0.object(["id": id]) } }
            }
            return message(
                ledger,
                channel: "email",
                api: "webhook",
                to: json?["to"]?.string ?? "",
                key: key,
                subject: json?["subject"]?.string,
                text: json?["text"]?.string ?? "",
                email: EmailParts(html: json?["html"]?.string, headers: json?["headers"])
            ) { id, _ in .json { $0.object(["id": id]) } }
        case (.POST, "/webhook/sms"):
            let json = JSONValue(parsing: body)
            return message(
                ledger,
                channel: "sms",
                api: "webhook",
                to: json?["to"]?.string ?? "",
                key: head.headers.first(name: "Idempotency-Key") ?? json?["idempotency_key"]?.string ?? "",
                subject: nil,
                text: json?["text"]?.string ?? "",
                invalidNumber: .error("invalid_number")
            ) { id, segments in
                .json {
                    $0.raw(#"{"id":"#)
                    $0.string(id)
                    $0.raw(#","segments":"#)
                    $0.integer(segments)
                    $0.raw("}")
                }
            }
        case (.POST, "/v3/mail/send"):
            let json = JSONValue(parsing: body)
            let personalizations = json?["personalizations"]?.elements ?? []
            let content = json?["content"]?.elements ?? []
            let text = content.first { $0["type"]?.string == "text/plain" }?["value"]?.string ?? ""
            let html = content.first { $0["type"]?.string == "text/html" }?["value"]?.string
            let subject = json?["subject"]?.string
            let requestKey =
                head.headers.first(name: "Idempotency-Key")
                ?? json?["personalizations"]?[0]?["custom_args"]?["idempotency_key"]?.string ?? ""
            let accepted: (String, Int) -> SimulatorReply = { id, _ in
                .respond(status: .accepted, headers: [("X-Message-Id", id)], body: [])
            }
            guard personalizations.count > 1 || personalizations.first?["substitutions"] != nil else {
                let to = personalizations.first?["to"]?[0]?["email"]?.string ?? ""
                return message(
                    ledger,
                    channel: "email",
                    api: "sendgrid",
                    to: to,
                    key: requestKey,
                    subject: subject,
                    text: text,
                    email: EmailParts(html: html, headers: personalizations.first?["headers"]),
                    accepted: accepted
                )
            }
            let recipients = personalizations.map { personalization in
                BatchRecipient(
                    to: personalization["to"]?[0]?["email"]?.string ?? "",
                    key: personalization["custom_args"]?["idempotency_key"]?.string ?? "",
                    substitutions: personalization["substitutions"],
                    headers: personalization["headers"]
                )
            }
            return batch(
                ledger,
                api: "sendgrid",
                key: requestKey,
                subject: subject,
                text: text,
                html: html,
                recipients: recipients,
                accepted: accepted
            )
        case (.POST, _) where path.hasPrefix("/2010-04-01/Accounts/") && path.hasSuffix("/Messages.json"):
            let form = formFields(body)
            return message(
                ledger,
                channel: "sms",
                api: "twilio",
                to: form["To"] ?? "",
                key: head.headers.first(name: "I-Twilio-Idempotency-Token") ?? "",
                subject: nil,
                text: form["Body"] ?? "",
                invalidNumber: .json(status: .badRequest) {
                    $0.raw(#"{"code":21211,"message":"#)
                    $0.string("The 'To' number is not a valid phone number.")
                    $0.raw("}")
                }
            ) { id, segments in
                .json(status: .created) {
                    $0.object(["sid": id, "status": "queued", "num_segments": String(segments)])
                }
            }
        case (.GET, _) where path.hasPrefix("/2010-04-01/Accounts/") && path.hasSuffix("/Messages.json"):
            return (twilioList(ledger, query: query), nil)
        case (.GET, "/stats"):
            return (.encoded(ledger.stats), nil)
        case (.GET, "/messages"):
            let limit = formFields(Data(query.utf8))["limit"].flatMap { Int($0) }
            return (.encoded(ledger.messages(limit: limit)), nil)
        case (.POST, "/reset"):
            ledger.reset()
            return (.respond(status: .noContent, headers: [], body: []), nil)
        case (.GET, "/faults"):
            return (.encoded(ledger.plan), nil)
        case (.PUT, "/faults"):
            do {
                ledger.plan = try JSONDecoder().decode(FaultPlan.self, from: body)
                return (.encoded(ledger.plan), nil)
            } catch {
                return (.error("invalid fault plan: \(error)"), nil)
            }
        default:
            return (.error("no such route", status: .notFound), nil)
        }
    }

    /// Applies the fault plan, then accepts (once per idempotency key) or refuses the message.
    private static func message(
        _ ledger: SimulatorLedger,
        channel: String,
        api: String,
        to: String,
        key: String,
        subject: String?,
        text: String,
        email: EmailParts = EmailParts(),
        invalidNumber: SimulatorReply = .error("refused"),
        accepted: (String, Int) -> SimulatorReply
    ) -> (SimulatorReply, Int?) {
        if to.isEmpty || key.isEmpty {
            _ = ledger.attempt(key: key)
            ledger.count { $0.refused += 1 }
            return (.error("missing recipient or idempotency key"), nil)
        }
        let (injected, delay) = fault(ledger, key: key)
        if let injected { return (injected, delay) }
        let plan = ledger.plan
        if plan.invalidNumbers.contains(to) {
            ledger.count { $0.refused += 1 }
            return (invalidNumber, delay)
        }
        if plan.refuse.contains(to) {
            ledger.count { $0.refused += 1 }
            return (.error("refused"), delay)
        }
        // A delayed answer still counts as delivered: the client may give up before it arrives and try again.
        let id = ledger.accept(
            AcceptedMessage(
                id: ledger.nextMessageID(prefix: channel == "sms" ? "SM" : "EM"),
                channel: channel,
                api: api,
                to: to,
                idempotencyKey: key,
                subject: subject,
                text: text,
                html: email.html,
                headers: email.headerValues,
                repeats: 0
            )
        )
        if let lost = lostAnswer(ledger) { return (lost, delay) }
        if let malformed = malformedAnswer(ledger) { return (malformed, delay) }
        return (accepted(id, smsSegments(text)), delay)
    }

    /// An email's HTML part and its own headers, which the simulator keeps for tests.
    struct EmailParts {
        var html: String?
        /// An object of header name → value.
        var headers: JSONValue?

        var headerValues: [String: String]? {
            headers.map {
                Dictionary(($0.members).map { ($0.key, $0.value.string ?? "") }, uniquingKeysWith: { a, _ in a })
            }
        }
    }

    /// One recipient of a batch request.
    struct BatchRecipient {
        var to: String
        var key: String
        /// An object of placeholder → value.
        var substitutions: JSONValue?
        /// An object of header name → value: the recipient's own headers.
        var headers: JSONValue?

        func fill(_ text: String) -> String {
            (substitutions?.members ?? []).reduce(text) {
                $0.replacingOccurrences(of: $1.key, with: $1.value.string ?? "")
            }
        }
    }

    /// Applies the fault plan to a batch request as a whole, then accepts each recipient as its own message, with
    /// its own key and its substitutions filled in, as SendGrid delivers them.
    private static func batch(
        _ ledger: SimulatorLedger,
        api: String,
        key: String,
        subject: String?,
        text: String,
        html: String?,
        recipients: [BatchRecipient],
        accepted: (String, Int) -> SimulatorReply
    ) -> (SimulatorReply, Int?) {
        let (injected, delay) = fault(ledger, key: key)
        if let injected { return (injected, delay) }
        guard !recipients.isEmpty, recipients.allSatisfy({ !$0.to.isEmpty && !$0.key.isEmpty }) else {
            ledger.count { $0.refused += 1 }
            return (.error("a recipient lacks an address or key"), nil)
        }
        // Like SendGrid with a malformed address, one refused recipient refuses the whole request.
        let plan = ledger.plan
        guard !recipients.contains(where: { plan.refuse.contains($0.to) }) else {
            ledger.count { $0.refused += 1 }
            return (.error("refused"), delay)
        }
        let batchID = ledger.nextMessageID(prefix: "EM")
        for recipient in recipients {
            _ = ledger.accept(
                AcceptedMessage(
                    id: batchID,
                    channel: "email",
                    api: api,
                    to: recipient.to,
                    idempotencyKey: recipient.key,
                    subject: subject.map(recipient.fill),
                    text: recipient.fill(text),
                    html: html.map(recipient.fill),
                    headers: EmailParts(headers: recipient.headers).headerValues,
                    repeats: 0
                )
            )
        }
        if let lost = lostAnswer(ledger) { return (lost, delay) }
        if let malformed = malformedAnswer(ledger) { return (malformed, delay) }
        return (accepted(batchID, 1), delay)
    }

    /// A dropped connection for a request whose message went out, when the plan loses this answer.
    private static func lostAnswer(_ ledger: SimulatorLedger) -> SimulatorReply? {
        guard Double.random(in: 0..<1) < ledger.plan.lostAnswerRate else { return nil }
        ledger.count { $0.lostAnswers += 1 }
        return .drop
    }

    /// A 200 whose body is an HTML page, for a request whose message went out, when the plan garbles this answer.
    private static func malformedAnswer(_ ledger: SimulatorLedger) -> SimulatorReply? {
        guard Double.random(in: 0..<1) < ledger.plan.malformedRate else { return nil }
        ledger.count { $0.malformedAnswers += 1 }
        return .respond(status: .ok, headers: [("Content-Type", "text/html")], body: Array("<html>oops</html>".utf8))
    }

    /// Twilio's message list for one number (`GET .../Messages.json?To=...`), newest first, in one page.
    private static func twilioList(_ ledger: SimulatorLedger, query: String) -> SimulatorReply {
        let to = formFields(Data(query.utf8))["To"] ?? ""
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let messages = ledger.messages(channel: "sms", to: to).filter { $0.api == "twilio" }
        return .json { body in
            body.raw(#"{"messages":["#)
            for (index, message) in messages.enumerated() {
                if index > 0 { body.raw(",") }
                body.object([
                    "sid": message.id, "to": message.to, "body": message.text, "status": "sent",
                    "date_created": formatter.string(from: message.acceptedAt),
                ])
            }
            body.raw(#"],"next_page_uri":null}"#)
        }
    }

    /// The fault plan's verdict on one request: the reply when a fault hits it (`nil` when it goes on), and the
    /// milliseconds to hold the answer back.
    private static func fault(_ ledger: SimulatorLedger, key: String) -> (reply: SimulatorReply?, delay: Int?) {
        let plan = ledger.plan
        let attempt = ledger.attempt(key: key)
        if attempt <= plan.failFirstAttempts {
            ledger.count { $0.injectedErrors += 1 }
            return (.error("temporarily unavailable", status: .serviceUnavailable), nil)
        }
        var delay: Int?
        if Double.random(in: 0..<1) < plan.delayRate {
            ledger.count { $0.injectedDelays += 1 }
            delay = plan.delayMilliseconds
        }
        if Double.random(in: 0..<1) < plan.dropRate {
            ledger.count { $0.injectedDrops += 1 }
            return (.drop, delay)
        }
        if Double.random(in: 0..<1) < plan.rateLimitRate {
            ledger.count { $0.injectedRateLimits += 1 }
            let headers = plan.retryAfterSeconds < 0 ? [] : [("Retry-After", String(plan.retryAfterSeconds))]
            return (.respond(status: .tooManyRequests, headers: headers, body: []), delay)
        }
        if Double.random(in: 0..<1) < plan.errorRate {
            ledger.count { $0.injectedErrors += 1 }
            return (.error("injected", status: HTTPResponseStatus(statusCode: plan.errorStatus)), delay)
        }
        return (nil, delay)
    }

    /// GSM-7 texts split at 160/153 characters, others at 70/67, as the gateways bill them.
    static func smsSegments(_ text: String) -> Int {
        let isASCII = text.unicodeScalars.allSatisfy { $0.isASCII }
        let units = isASCII ? text.unicodeScalars.count : text.utf16.count
        let (single, multi) = isASCII ? (160, 153) : (70, 67)
        return units <= single ? 1 : (units + multi - 1) / multi
    }

    static func formFields(_ data: Data) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in String(decoding: data, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        return fields
    }
}

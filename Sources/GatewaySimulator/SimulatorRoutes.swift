import Foundation
import NIOHTTP1

/// The simulator's routes: which API a request speaks, and what the fault plan makes of it.
enum SimulatorRoutes {
    /// The reply, and the milliseconds to hold it back (a delay fault), for one complete request.
    static func handle(head: HTTPRequestHead, body: Data, ledger: SimulatorLedger) -> (SimulatorReply, Int?) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        switch (head.method, path) {
        case (.POST, "/webhook/email"):
            let json = jsonObject(body)
            return message(
                ledger,
                channel: "email",
                api: "webhook",
                to: json["to"] as? String ?? "",
                key: head.headers.first(name: "Idempotency-Key") ?? json["idempotency_key"] as? String ?? "",
                subject: json["subject"] as? String,
                text: json["text"] as? String ?? ""
            ) { id, _ in .json(["id": id]) }
        case (.POST, "/webhook/sms"):
            let json = jsonObject(body)
            return message(
                ledger,
                channel: "sms",
                api: "webhook",
                to: json["to"] as? String ?? "",
                key: head.headers.first(name: "Idempotency-Key") ?? json["idempotency_key"] as? String ?? "",
                subject: nil,
                text: json["text"] as? String ?? "",
                invalidNumber: .json(["error": "invalid_number"], status: .badRequest)
            ) { id, segments in .json(["id": id, "segments": segments]) }
        case (.POST, "/v3/mail/send"):
            let json = jsonObject(body)
            let personalizations = json["personalizations"] as? [[String: Any]] ?? []
            let content = json["content"] as? [[String: Any]] ?? []
            let text = content.first { $0["type"] as? String == "text/plain" }?["value"] as? String ?? ""
            let subject = json["subject"] as? String
            let requestKey =
                head.headers.first(name: "Idempotency-Key")
                ?? (json["custom_args"] as? [String: Any])?["idempotency_key"] as? String ?? ""
            let accepted: (String, Int) -> SimulatorReply = { id, _ in
                .respond(status: .accepted, headers: [("X-Message-Id", id)], body: Data())
            }
            guard personalizations.count > 1 || personalizations.first?["substitutions"] != nil else {
                let to = (personalizations.first?["to"] as? [[String: Any]])?.first?["email"] as? String ?? ""
                return message(
                    ledger,
                    channel: "email",
                    api: "sendgrid",
                    to: to,
                    key: requestKey,
                    subject: subject,
                    text: text,
                    accepted: accepted
                )
            }
            // A batch: faults hit the whole request; each personalization is its own message, with its own key and
            // its substitutions applied, as SendGrid delivers them.
            let recipients = personalizations.map { personalization in
                let substitutions = personalization["substitutions"] as? [String: String] ?? [:]
                func fill(_ text: String) -> String {
                    substitutions.reduce(text) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
                }
                return (
                    to: (personalization["to"] as? [[String: Any]])?.first?["email"] as? String ?? "",
                    key: (personalization["custom_args"] as? [String: Any])?["idempotency_key"] as? String ?? "",
                    subject: subject.map(fill),
                    text: fill(text)
                )
            }
            let (injected, delay) = fault(ledger, key: requestKey)
            if let injected { return (injected, delay) }
            guard recipients.allSatisfy({ !$0.to.isEmpty && !$0.key.isEmpty }) else {
                ledger.count { $0.refused += 1 }
                return (.json(["error": "a personalization lacks a recipient or key"], status: .badRequest), nil)
            }
            // Like SendGrid with a malformed address, one refused recipient refuses the whole request.
            let plan = ledger.plan
            guard !recipients.contains(where: { plan.refuse.contains($0.to) }) else {
                ledger.count { $0.refused += 1 }
                return (.json(["error": "refused"], status: .badRequest), delay)
            }
            let batchID = "EM" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
            for recipient in recipients {
                _ = ledger.accept(
                    AcceptedMessage(
                        id: batchID,
                        channel: "email",
                        api: "sendgrid",
                        to: recipient.to,
                        idempotencyKey: recipient.key,
                        subject: recipient.subject,
                        text: recipient.text,
                        repeats: 0
                    )
                )
            }
            return (accepted(batchID, 1), delay)
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
                invalidNumber: .json(
                    ["code": 21211, "message": "The 'To' number is not a valid phone number."],
                    status: .badRequest
                )
            ) { id, segments in
                .json(["sid": id, "status": "queued", "num_segments": String(segments)], status: .created)
            }
        case (.GET, "/stats"):
            return (.encoded(ledger.stats), nil)
        case (.GET, "/messages"):
            let limit = formFields(Data(query.utf8))["limit"].flatMap { Int($0) }
            return (.encoded(ledger.messages(limit: limit)), nil)
        case (.POST, "/reset"):
            ledger.reset()
            return (.respond(status: .noContent, headers: [], body: Data()), nil)
        case (.GET, "/faults"):
            return (.encoded(ledger.plan), nil)
        case (.PUT, "/faults"):
            do {
                ledger.plan = try JSONDecoder().decode(FaultPlan.self, from: body)
                return (.encoded(ledger.plan), nil)
            } catch {
                return (.json(["error": "invalid fault plan: \(error)"], status: .badRequest), nil)
            }
        default:
            return (.json(["error": "no such route"], status: .notFound), nil)
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
        invalidNumber: SimulatorReply = .json(["error": "refused"], status: .badRequest),
        accepted: (String, Int) -> SimulatorReply
    ) -> (SimulatorReply, Int?) {
        if to.isEmpty || key.isEmpty {
            _ = ledger.attempt(key: key)
            ledger.count { $0.refused += 1 }
            return (.json(["error": "missing recipient or idempotency key"], status: .badRequest), nil)
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
            return (.json(["error": "refused"], status: .badRequest), delay)
        }
        // A delayed answer still counts as delivered: the client may give up before it arrives and try again.
        let id = ledger.accept(
            AcceptedMessage(
                id: (channel == "sms" ? "SM" : "EM") + UUID().uuidString.replacingOccurrences(of: "-", with: ""),
                channel: channel,
                api: api,
                to: to,
                idempotencyKey: key,
                subject: subject,
                text: text,
                repeats: 0
            )
        )
        return (accepted(id, smsSegments(text)), delay)
    }

    /// The fault plan's verdict on one request: the reply when a fault hits it (`nil` when it goes on), and the
    /// milliseconds to hold the answer back.
    private static func fault(_ ledger: SimulatorLedger, key: String) -> (reply: SimulatorReply?, delay: Int?) {
        let plan = ledger.plan
        let attempt = ledger.attempt(key: key)
        if attempt <= plan.failFirstAttempts {
            ledger.count { $0.injectedErrors += 1 }
            return (.json(["error": "temporarily unavailable"], status: .serviceUnavailable), nil)
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
            let headers = [("Retry-After", String(plan.retryAfterSeconds))]
            return (.respond(status: .tooManyRequests, headers: headers, body: Data()), delay)
        }
        if Double.random(in: 0..<1) < plan.errorRate {
            ledger.count { $0.injectedErrors += 1 }
            return (.json(["error": "injected"], status: HTTPResponseStatus(statusCode: plan.errorStatus)), delay)
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

    private static func jsonObject(_ data: Data) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
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

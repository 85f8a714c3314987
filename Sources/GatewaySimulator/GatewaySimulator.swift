import FlyingFox
import FlyingSocks
import Foundation

/// An HTTP server on loopback that speaks the gateways' APIs, records what it accepts and injects faults.
///
/// | route | API |
/// |---|---|
/// | `POST /webhook/email`, `POST /webhook/sms` | Coupond's generic JSON webhooks |
/// | `POST /v3/mail/send` | SendGrid v3 Mail Send |
/// | `POST /2010-04-01/Accounts/{sid}/Messages.json` | Twilio Messages |
/// | `GET /stats`, `GET /messages?limit=N`, `POST /reset` | what it saw |
/// | `GET /faults`, `PUT /faults` | the ``FaultPlan`` (JSON) |
public final class GatewaySimulator: Sendable {
    private let server: HTTPServer
    private let ledger = SimulatorLedger()

    /// - Parameters:
    ///   - host: the address to listen on; loopback unless told otherwise.
    ///   - port: 0 picks a free port (see ``port()``).
    public init(host: String = "127.0.0.1", port: UInt16 = 0, faults: FaultPlan = FaultPlan()) throws {
        server = HTTPServer(
            address: try sockaddr_in.inet(ip4: host, port: port),
            timeout: 120,
            logger: .disabled
        )
        ledger.plan = faults
    }

    /// Serves until the calling task is cancelled.
    public func run() async throws {
        await registerRoutes()
        try await server.run()
    }

    /// Waits until the server accepts connections and returns its port.
    public func port() async throws -> UInt16 {
        try await server.waitUntilListening()
        guard case .ip4(_, port: let port) = await server.listeningAddress else {
            throw URLError(.cannotFindHost)
        }
        return port
    }

    public func stop() async {
        await server.stop(timeout: 1)
    }

    public var stats: SimulatorStats { ledger.stats }

    public func messages(limit: Int? = nil) -> [AcceptedMessage] { ledger.messages(limit: limit) }

    public var faults: FaultPlan {
        get { ledger.plan }
        set { ledger.plan = newValue }
    }

    public func reset() { ledger.reset() }

    private func registerRoutes() async {
        let ledger = self.ledger
        await server.appendRoute("POST /webhook/email") { request in
            let body = Self.jsonObject(try await request.bodyData)
            return await Self.handle(
                ledger,
                channel: "email",
                api: "webhook",
                to: body["to"] as? String ?? "",
                key: request.headers[HTTPHeader("Idempotency-Key")] ?? body["idempotency_key"] as? String ?? "",
                subject: body["subject"] as? String,
                text: body["text"] as? String ?? ""
            ) { id, _ in Self.json(["id": id], status: .ok) }
        }
        await server.appendRoute("POST /webhook/sms") { request in
            let body = Self.jsonObject(try await request.bodyData)
            let text = body["text"] as? String ?? ""
            return await Self.handle(
                ledger,
                channel: "sms",
                api: "webhook",
                to: body["to"] as? String ?? "",
                key: request.headers[HTTPHeader("Idempotency-Key")] ?? body["idempotency_key"] as? String ?? "",
                subject: nil,
                text: text,
                invalidNumber: { Self.json(["error": "invalid_number"], status: .badRequest) }
            ) { id, segments in Self.json(["id": id, "segments": segments], status: .ok) }
        }
        await server.appendRoute("POST /v3/mail/send") { request in
            let body = Self.jsonObject(try await request.bodyData)
            let personalizations = body["personalizations"] as? [[String: Any]]
            let to = (personalizations?.first?["to"] as? [[String: Any]])?.first?["email"] as? String ?? ""
            let content = body["content"] as? [[String: Any]] ?? []
            let text = content.first { $0["type"] as? String == "text/plain" }?["value"] as? String ?? ""
            let key =
                request.headers[HTTPHeader("Idempotency-Key")]
                ?? (body["custom_args"] as? [String: Any])?["idempotency_key"] as? String ?? ""
            return await Self.handle(
                ledger,
                channel: "email",
                api: "sendgrid",
                to: to,
                key: key,
                subject: body["subject"] as? String,
                text: text
            ) { id, _ in HTTPResponse(statusCode: .accepted, headers: HTTPHeaders([HTTPHeader("X-Message-Id"): id])) }
        }
        await server.appendRoute("POST /2010-04-01/Accounts/*") { request in
            let form = Self.formFields(try await request.bodyData)
            let text = form["Body"] ?? ""
            return await Self.handle(
                ledger,
                channel: "sms",
                api: "twilio",
                to: form["To"] ?? "",
                key: request.headers[HTTPHeader("I-Twilio-Idempotency-Token")] ?? "",
                subject: nil,
                text: text,
                invalidNumber: {
                    Self.json(
                        ["code": 21211, "message": "The 'To' number is not a valid phone number."],
                        status: .badRequest
                    )
                }
            ) { id, segments in
                Self.json(["sid": id, "status": "queued", "num_segments": String(segments)], status: .created)
            }
        }
        await server.appendRoute("GET /stats") { _ in Self.encoded(ledger.stats) }
        await server.appendRoute("GET /messages") { request in
            Self.encoded(ledger.messages(limit: request.query["limit"].flatMap { Int($0) }))
        }
        await server.appendRoute("POST /reset") { _ in
            ledger.reset()
            return HTTPResponse(statusCode: .noContent)
        }
        await server.appendRoute("GET /faults") { _ in Self.encoded(ledger.plan) }
        await server.appendRoute("PUT /faults") { request in
            do {
                ledger.plan = try JSONDecoder().decode(FaultPlan.self, from: try await request.bodyData)
                return Self.encoded(ledger.plan)
            } catch {
                return Self.json(["error": "invalid fault plan: \(error)"], status: .badRequest)
            }
        }
    }

    /// Applies the fault plan, then accepts (once per idempotency key) or refuses the message.
    private static func handle(
        _ ledger: SimulatorLedger,
        channel: String,
        api: String,
        to: String,
        key: String,
        subject: String?,
        text: String,
        invalidNumber: () -> HTTPResponse = { json(["error": "refused"], status: .badRequest) },
        accepted: (String, Int) -> HTTPResponse
    ) async -> HTTPResponse {
        let plan = ledger.plan
        let attempt = ledger.attempt(key: key)
        if to.isEmpty || key.isEmpty {
            ledger.count { $0.refused += 1 }
            return json(["error": "missing recipient or idempotency key"], status: .badRequest)
        }
        if attempt <= plan.failFirstAttempts {
            ledger.count { $0.injectedErrors += 1 }
            return json(["error": "temporarily unavailable"], status: .serviceUnavailable)
        }
        if Double.random(in: 0..<1) < plan.delayRate {
            ledger.count { $0.injectedDelays += 1 }
            try? await Task.sleep(for: .milliseconds(plan.delayMilliseconds))
        }
        if Double.random(in: 0..<1) < plan.dropRate {
            ledger.count { $0.injectedDrops += 1 }
            return HTTPResponse(statusCode: .ok, body: HTTPBodySequence(from: DroppedBody(), count: 64))
        }
        if Double.random(in: 0..<1) < plan.rateLimitRate {
            ledger.count { $0.injectedRateLimits += 1 }
            return HTTPResponse(
                statusCode: .tooManyRequests,
                headers: HTTPHeaders([HTTPHeader("Retry-After"): String(plan.retryAfterSeconds)])
            )
        }
        if Double.random(in: 0..<1) < plan.errorRate {
            ledger.count { $0.injectedErrors += 1 }
            return json(["error": "injected"], status: HTTPStatusCode(plan.errorStatus, phrase: "Injected"))
        }
        if plan.invalidNumbers.contains(to) {
            ledger.count { $0.refused += 1 }
            return invalidNumber()
        }
        if plan.refuse.contains(to) {
            ledger.count { $0.refused += 1 }
            return json(["error": "refused"], status: .badRequest)
        }
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
        return accepted(id, smsSegments(text))
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

    private static func formFields(_ data: Data) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in String(decoding: data, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        return fields
    }

    private static func json(_ object: [String: Any], status: HTTPStatusCode) -> HTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return HTTPResponse(statusCode: status, headers: HTTPHeaders([.contentType: "application/json"]), body: data)
    }

    private static func encoded(_ value: some Encodable) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data()
        return HTTPResponse(statusCode: .ok, headers: HTTPHeaders([.contentType: "application/json"]), body: data)
    }
}

/// A response body that fails on its first read, so the server closes the connection mid-response.
struct DroppedBody: AsyncBufferedSequence {
    typealias Element = UInt8

    struct AsyncIterator: AsyncBufferedIteratorProtocol {
        mutating func next() async throws -> UInt8? { throw URLError(.networkConnectionLost) }
        mutating func nextBuffer(suggested count: Int) async throws -> [UInt8]? {
            throw URLError(.networkConnectionLost)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
}

import Curl
public import Foundation
public import Postgres

/// A database with a shop, a gateway simulator process and a folder of configuration, for end-to-end tests of
/// `coupond run` as a separate process.
public final class EngineHarness {
    public let db: TestDatabase
    public let folder: URL
    public let simulator: ChildProcess
    /// The simulator's base URL, for example `http://127.0.0.1:41234`.
    public let simulatorURL: String
    public let fixtures: Fixtures
    public let shop: Int64
    /// The time the rules see until a test moves it.
    public static let scheduledFrom = utc(2026, 12, 1, 10)

    /// Runs `body` with a fresh harness and tears everything down afterwards.
    public static func with<T>(
        faults: String? = nil,
        timeZone: String = "UTC",
        server: String? = nil,
        _ body: (EngineHarness) throws -> T
    ) throws -> T {
        try TestDatabase.with(server: server) { db in
            let harness = try EngineHarness(db: db, faults: faults, timeZone: timeZone)
            defer { harness.close() }
            return try body(harness)
        }
    }

    private init(db: TestDatabase, faults: String?, timeZone: String) throws {
        self.db = db
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("coupond-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var arguments: [String] = []
        if let faults { arguments += ["--faults", faults] }
        simulator = try ChildProcess("coupond-gateway-sim", arguments, folder: folder)
        guard let output = simulator.waitForOutput("listening on "),
            let line = output.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") })
        else { throw HarnessError("gateway simulator did not start: \(simulator.stderr)") }
        simulatorURL = String(line.dropFirst("listening on ".count))
        fixtures = Fixtures(db.connection)
        try fixtures.setClock(Self.scheduledFrom)
        shop = try fixtures.shop(timeZone: timeZone)
        try Data(repeating: 7, count: 32).write(to: folder.appendingPathComponent("claim-key"))
        try Data(repeating: 9, count: 32).write(to: folder.appendingPathComponent("report-key"))
        try Data("gateway-secret-token-123".utf8).write(to: folder.appendingPathComponent("gateway-token"))
    }

    func close() {
        _ = simulator.terminate(timeout: 5)
        try? FileManager.default.removeItem(at: folder)
    }

    /// Writes a configuration file pointing at the simulator (SendGrid and Twilio APIs unless told otherwise); `http`
    /// is the body of an `http` section, for example `"listen": "127.0.0.1:0"`.
    public func configuration(
        emailProvider: String = "sendgrid",
        smsProvider: String = "twilio",
        leaseSeconds: Double = 30,
        batchSize: Int = 100,
        maxAttempts: Int? = 5,
        timeoutSeconds: Double = 10,
        extraEngine: String = "",
        extraEmail: String = "",
        extraSMS: String = "",
        extraLinks: String = "",
        http: String? = nil,
        emailURL: String? = nil,
        emailCredentialFile: String? = nil
    ) throws -> URL {
        let emailURL =
            emailURL
            ?? (emailProvider == "sendgrid" ? "\(simulatorURL)/v3/mail/send" : "\(simulatorURL)/webhook/email")
        let smsURL = smsProvider == "twilio" ? simulatorURL : "\(simulatorURL)/webhook/sms"
        let token = folder.appendingPathComponent("gateway-token").path
        let attempts = maxAttempts.map { #", "max_attempts": \#($0)"# } ?? ""
        let json = """
            {
              "engine": { "poll_interval_seconds": 0.2, "lease_seconds": \(leaseSeconds), "batch_size": \(batchSize),
                          "shutdown_grace_seconds": 5\(extraEngine) },
              "email": { "provider": "\(emailProvider)", "url": "\(emailURL)", "from": "coupons@shop.example",
                         "credential_file": "\(emailCredentialFile ?? token)", "timeout_seconds": \(timeoutSeconds)\(attempts)\(extraEmail) },
              "sms": { "provider": "\(smsProvider)", "url": "\(smsURL)", "account_sid": "AC0123456789abcdef0123456789abcdef",
                       "from": "+15005550006", "credential_file": "\(token)", "price_per_segment": "0.05",
                       "timeout_seconds": \(timeoutSeconds), "reconcile_after_seconds": 0.3\(attempts)\(extraSMS) },
              "links": { "public_base_url": "https://coupond.example", "claim_key_file": "\(folder.path)/claim-key",
                         "report_key_file": "\(folder.path)/report-key"\(extraLinks) }\(http.map { ",\n  \"http\": { \($0) }" } ?? "")
            }
            """
        let url = folder.appendingPathComponent("coupond-\(UUID().uuidString.prefix(6)).json")
        try Data(json.utf8).write(to: url)
        return url
    }

    /// Starts `coupond run` against this database, connected as a login member of `coupond_daemon`: every engine
    /// test proves that role is enough.
    public func startDaemon(
        config: URL,
        instance: String = "test-\(UUID().uuidString.prefix(6))",
        environment extra: [String: String] = [:]
    ) throws -> ChildProcess {
        var environment: [String: String?] = db.environment.mapValues { $0 }
        environment.merge(extra.mapValues { $0 }) { $1 }
        environment["DATABASE_URL"] = .some(nil)
        environment["PGUSER"] = try db.loginRole(memberOf: "coupond_daemon")
        environment["COUPOND_INSTANCE_NAME"] = instance
        return try ChildProcess(
            "coupond",
            ["run", "--config", config.path, "--log-level", "debug"],
            environment: environment,
            folder: folder
        )
    }

    /// Schedules a send two hours ahead of the rule clock and returns its id; it is due once ``arrive(at:)`` runs.
    public func schedule(
        group: Int64,
        coupon: Int64,
        email: Bool = true,
        sms: Bool = true,
        hoursAhead: Int = 2
    ) throws -> Int64 {
        try db.connection.queryRow(
            """
            INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at)
            VALUES (\(shop), \(group), \(coupon), \(email), \(sms), \(Self.scheduledFrom.addingTimeInterval(Double(hoursAhead) * 3600)))
            RETURNING id
            """
        )!.decode("id")
    }

    /// Moves the rule clock to `hoursAhead` hours after the start, making sends scheduled up to then due.
    public func arrive(hoursAhead: Int = 2) throws {
        try fixtures.setClock(Self.scheduledFrom.addingTimeInterval(Double(hoursAhead) * 3600))
        try db.connection.execute("NOTIFY coupond_sends")
    }

    /// A send's status, counts and reason.
    public func send(_ id: Int64) throws -> PostgresRow {
        try db.connection.queryRow("SELECT * FROM coupond.sends WHERE id = \(id)")!
    }

    /// Waits until the send ends and its notice is settled; returns its final status.
    @discardableResult
    public func waitUntilFinished(_ id: Int64, timeout: Double = 60) throws -> String? {
        _ = try eventually(timeout: timeout) {
            let row = try send(id)
            return ["done", "failed", "cancelled"].contains(row["status"] ?? "")
                && (row["status"] == "cancelled" || row["notice_status"] != "pending")
        }
        return try send(id)["status"]
    }

    /// The simulator's counters.
    public func stats() throws -> [String: Int] {
        let response = try CurlEasyClient().perform(HTTPRequest(url: simulatorURL + "/stats"))
        return (try JSONSerialization.jsonObject(with: response.body) as? [String: Int]) ?? [:]
    }

    /// The messages the simulator accepted.
    public func messages() throws -> [[String: Any]] {
        let response = try CurlEasyClient().perform(HTTPRequest(url: simulatorURL + "/messages"))
        return (try JSONSerialization.jsonObject(with: response.body) as? [[String: Any]]) ?? []
    }

    /// Replaces the simulator's fault plan.
    public func setFaults(_ json: String) throws {
        let response = try CurlEasyClient().perform(
            HTTPRequest(method: "PUT", url: simulatorURL + "/faults", body: Data(json.utf8))
        )
        guard response.status == 200 else { throw HarnessError("fault plan refused: \(response.status)") }
    }
}

public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

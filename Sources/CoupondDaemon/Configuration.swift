public import Foundation
public import HTTPEndpoints
public import Messages
public import Postgres
public import Storage
import WireJSON

/// Settings from the configuration file (JSON), with environment variables taking precedence.
///
/// Every setting is optional, and its default is the initial value of its property here; README lists them. The file
/// is decoded section by section (``init(from:)``, where each setting is named once); a wrong or unknown setting is a
/// ``ConfigurationError`` that names it and the file.
public struct Configuration: Sendable, Decodable {
    /// An `email` or `sms` section: the gateway of one channel.
    public struct Gateway: Sendable {
        /// `webhook`, `sendgrid` (email) or `twilio` (SMS).
        public var provider = "webhook"
        public var url: String?
        public var from: String?
        public var accountSID: String?
        public var credentialFile: String?
        public var ratePerSecond: Double?
        public var connectTimeout = 5.0
        public var timeout = 10.0
        /// A cap on failed attempts per message on top of the time budget; `nil` for none.
        public var maxAttempts: Int?
        /// How long a message is retried after its first attempt.
        public var retryBudget = 15.0 * 60
        /// Email only: recipients per request for a gateway that takes many (SendGrid: up to 1,000).
        public var recipientsPerRequest = 1
        /// What happens to a message that may have gone out, where the provider neither drops repeats nor can be
        /// asked (SendGrid): `skip` fails it as delivery unconfirmed, `resend` sends it again.
        public var onUnknown = "skip"
        /// Seconds between an unanswered request and the lookup of its message in the provider's records (Twilio).
        public var reconcileAfter = 10.0
        /// SMTP only (`email.smtp_starttls`): `required` (an `smtp://` server must offer STARTTLS) or `off` (plain
        /// text, for a relay on loopback).
        public var smtpStartTLS = "required"
        /// Failures in a row (no connection, timeout, 5xx) after which the gateway's requests wait for it.
        public var breakerFailures = 10

        /// The settings both channels have.
        mutating func read(from section: inout SettingsReader) throws {
            try section.read("provider", into: &provider)
            try section.read("url", into: &url)
            try section.read("from", into: &from)
            try section.read("credential_file", into: &credentialFile)
            try section.read("rate_per_second", into: &ratePerSecond, .positive)
            try section.read("connect_timeout_seconds", into: &connectTimeout, .seconds)
            try section.read("timeout_seconds", into: &timeout, .seconds)
            try section.read("max_attempts", into: &maxAttempts, .count)
            try section.read("retry_budget_seconds", into: &retryBudget, .seconds)
            try section.read("on_unknown", into: &onUnknown)
            try section.read("breaker_failures", into: &breakerFailures, .count)
        }
    }

    public var databaseURL: String?
    /// Keepalives and timeouts of `coupond run`'s connections (see ``connectionSafeguards``).
    public var safeguards = ConnectionSafeguards()
    /// `database.idle_in_transaction_timeout_seconds`, when set.
    public var idleInTransactionTimeout: Double?
    /// The roles `coupond migrate` creates and grants.
    public var roles = RoleNames()
    /// Whether the scheduler listens for notifications (`false`: poll only, for transaction-pooling proxies).
    public var listen = true
    public var templatesPath: String?
    /// `paths.templates_language`: the language the default templates (not a locale subfolder's) are written in.
    public var templatesLanguage = "en"
    public var sqlPath: String?
    public var instanceName: String?
    public var pollInterval = 5.0
    public var leaseSeconds = 30.0
    public var batchSize = 500
    public var batchesInFlight = 4
    public var maxSendAttempts = 20
    public var maxConcurrentSends = 4
    public var maxInFlight = 128
    public var preparationThreads = ProcessInfo.processInfo.activeProcessorCount
    public var shutdownGrace = 10.0
    public var email = Gateway()
    public var sms = Gateway()
    public var smsPricePerSegment: Decimal?
    public var publicBaseURL: String?
    public var claimKeyFile: String?
    public var reportKeyFile: String?
    /// `links.short_sms_links`: whether SMS carry `<public_base_url>/c/<code>` (with a public base URL).
    public var shortSMSLinks = true
    /// `links.short_email_links`: whether emails carry `<public_base_url>/e/<code>`, which records clicks.
    public var shortEmailLinks = false
    /// `http.listen`: where `coupond run` serves its HTTP endpoints; off when `nil`.
    public var httpListen: (host: String, port: Int)?
    /// `http.claims_key_file`: the bearer key `POST /claims` requires.
    public var claimsKeyFile: String?
    /// `http.max_connections`, `http.*_timeout_seconds` and the other caps of the listener.
    public var httpLimits = ListenerLimits()

    /// Every setting at its default.
    public init() {}

    /// Reads `path` when given, then applies the environment.
    ///
    /// - Throws: ``ConfigurationError`` naming the setting that is wrong.
    public static func load(path: String?, environment: [String: String]) throws -> Configuration {
        var configuration = Configuration()
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(setting: path, reason: "cannot be read")
            }
            configuration = try decode(data, source: path)
        }
        try configuration.apply(environment)
        return configuration
    }

    /// The settings of a configuration file's text; `source` names the file in errors.
    public static func decode(_ data: Data, source: String) throws -> Configuration {
        // JSONDecoder keeps the first of two equal keys without a word, so an override appended to the file would be
        // ignored: a repeated key is refused by name instead.
        if let parsed = JSONValue(parsing: data), let repeated = Self.repeatedKey(in: parsed) {
            throw ConfigurationError(setting: repeated, reason: "is set more than once (in \(source))")
        }
        let decoder = JSONDecoder()
        decoder.userInfo[Self.sourceKey] = source
        do {
            return try decoder.decode(Configuration.self, from: data)
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError(setting: source, reason: "is not valid JSON")
        }
    }

    /// The dotted name of the first key an object of `value` repeats, or `nil`.
    static func repeatedKey(in value: JSONValue, path: String = "") -> String? {
        var seen: Set<String> = []
        for member in value.members {
            let name = path.isEmpty ? member.key : path + "." + member.key
            if !seen.insert(member.key).inserted { return name }
            if let repeated = repeatedKey(in: member.value, path: name) { return repeated }
        }
        return nil
    }

    static let sourceKey = CodingUserInfoKey(rawValue: "coupond.configuration.source")!

    public init(from decoder: any Decoder) throws {
        self.init()
        var file = try SettingsReader(decoder, source: decoder.userInfo[Self.sourceKey] as? String ?? "configuration")
        try file.section("database") { database in
            try database.read("url", into: &databaseURL)
            try database.read("keepalives_idle_seconds", into: &safeguards.keepalivesIdle, .secondsOrZero)
            try database.read("tcp_user_timeout_seconds", into: &safeguards.tcpUserTimeout, .secondsOrZero)
            try database.read("statement_timeout_seconds", into: &safeguards.statementTimeout, .secondsOrZero)
            try database.read("idle_in_transaction_timeout_seconds", into: &idleInTransactionTimeout, .secondsOrZero)
            for (key, keyPath) in [
                ("daemon_role", \RoleNames.daemon), ("platform_role", \RoleNames.platform),
                ("readonly_role", \RoleNames.readonly),
            ] as [(String, WritableKeyPath<RoleNames, String>)] {
                var name: String?
                try database.read(key, into: &name, expected: Self.roleNameExpected, Self.roleName)
                if let name { roles[keyPath: keyPath] = name }
            }
        }
        try file.section("paths") { paths in
            try paths.read("templates", into: &templatesPath)
            try paths.read("templates_language", into: &templatesLanguage)
            try paths.read("sql", into: &sqlPath)
        }
        try file.section("engine") { engine in
            try engine.read("instance_name", into: &instanceName)
            try engine.read("poll_interval_seconds", into: &pollInterval, .seconds)
            try engine.read("lease_seconds", into: &leaseSeconds, .seconds)
            try engine.read("batch_size", into: &batchSize, .count)
            try engine.read("batches_in_flight", into: &batchesInFlight, .count)
            try engine.read("max_send_attempts", into: &maxSendAttempts, .count)
            try engine.read("max_concurrent_sends", into: &maxConcurrentSends, .count)
            try engine.read("max_in_flight", into: &maxInFlight, .count)
            try engine.read("preparation_threads", into: &preparationThreads, .count)
            try engine.read("shutdown_grace_seconds", into: &shutdownGrace, .secondsOrZero)
            try engine.read("listen", into: &listen)
        }
        try file.section("email") { email in
            try self.email.read(from: &email)
            try email.read("recipients_per_request", into: &self.email.recipientsPerRequest, .count)
            try email.read("smtp_starttls", into: &self.email.smtpStartTLS)
        }
        try file.section("sms") { sms in
            try self.sms.read(from: &sms)
            try sms.read("account_sid", into: &self.sms.accountSID)
            try sms.read("reconcile_after_seconds", into: &self.sms.reconcileAfter, .secondsOrZero)
            try sms.read("price_per_segment", into: &smsPricePerSegment, expected: "a price", Self.price)
        }
        try file.section("links") { links in
            try links.read("public_base_url", into: &publicBaseURL)
            try links.read("claim_key_file", into: &claimKeyFile)
            try links.read("report_key_file", into: &reportKeyFile)
            try links.read("short_sms_links", into: &shortSMSLinks)
            try links.read("short_email_links", into: &shortEmailLinks)
        }
        try file.section("http") { http in
            try http.read("listen", into: &httpListen, expected: Self.listenExpected, Self.listenAddress)
            try http.read("claims_key_file", into: &claimsKeyFile)
            try http.read("max_connections", into: &httpLimits.maxConnections, .count)
            try http.read("max_connections_per_address", into: &httpLimits.maxConnectionsPerAddress, .countOrZero)
            try http.read("header_timeout_seconds", into: &httpLimits.headerTimeout, .seconds)
            try http.read("body_timeout_seconds", into: &httpLimits.bodyTimeout, .seconds)
            try http.read("idle_timeout_seconds", into: &httpLimits.idleTimeout, .seconds)
            try http.read("write_timeout_seconds", into: &httpLimits.writeTimeout, .seconds)
            try http.read("max_report_downloads", into: &httpLimits.maxReportDownloads, .count)
        }
        try file.refuseUnknown()
    }

    mutating func apply(_ environment: [String: String]) throws {
        if let url = environment["COUPOND_DATABASE_URL"] ?? environment["DATABASE_URL"], !url.isEmpty {
            databaseURL = url
        }
        if let value = environment["COUPOND_TEMPLATES"] { templatesPath = value }
        if let value = environment["COUPOND_SQL_DIR"] { sqlPath = value }
        if let value = environment["COUPOND_INSTANCE_NAME"] { instanceName = value }
        if let value = environment["COUPOND_EMAIL_URL"] { email.url = value }
        if let value = environment["COUPOND_EMAIL_PROVIDER"] { email.provider = value }
        if let value = environment["COUPOND_SMS_URL"] { sms.url = value }
        if let value = environment["COUPOND_SMS_PROVIDER"] { sms.provider = value }
        if let value = environment["COUPOND_PUBLIC_BASE_URL"] { publicBaseURL = value }
        if let text = environment["COUPOND_SMS_PRICE_PER_SEGMENT"] {
            guard let price = Self.price(text) else {
                throw ConfigurationError(setting: "COUPOND_SMS_PRICE_PER_SEGMENT", reason: "\"\(text)\" is not a price")
            }
            smsPricePerSegment = price
        }
        for (name, keyPath) in [
            ("COUPOND_POLL_INTERVAL_SECONDS", \Configuration.pollInterval), ("COUPOND_LEASE_SECONDS", \.leaseSeconds),
        ] as [(String, WritableKeyPath<Configuration, Double>)] {
            guard let text = environment[name] else { continue }
            let rule = SettingRule<Double>.seconds
            guard let value = Double(text), rule.accepts(value) else {
                throw ConfigurationError(setting: name, reason: "must be \(rule.expected)")
            }
            self[keyPath: keyPath] = value
        }
        // systemd credentials (LoadCredential=) fill in secrets the file does not name.
        if let directory = environment["CREDENTIALS_DIRECTORY"] {
            func credential(_ name: String) -> String? {
                let path = directory + "/" + name
                return FileManager.default.fileExists(atPath: path) ? path : nil
            }
            email.credentialFile = email.credentialFile ?? credential("email-token")
            sms.credentialFile = sms.credentialFile ?? credential("sms-token")
            claimKeyFile = claimKeyFile ?? credential("claim-key")
            reportKeyFile = reportKeyFile ?? credential("report-key")
            claimsKeyFile = claimsKeyFile ?? credential("claims-key")
        }
    }

    static let listenExpected = "host:port, such as 127.0.0.1:8080"

    /// `host:port`, `[v6 address]:port` or `:port` (every address); port 0 lets the system choose.
    static func listenAddress(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    /// A decimal price such as `0.0075`: digits, optionally a point and more digits.
    public static func price(_ text: String) -> Decimal? {
        guard text.range(of: #"^[0-9]+(\.[0-9]+)?$"#, options: .regularExpression) != nil else { return nil }
        return Decimal(string: text, locale: Locale(identifier: "en_US_POSIX"))
    }

    static let roleNameExpected = "a role name of lowercase letters, digits and underscores"

    /// A PostgreSQL role name: a lowercase letter or underscore, then up to 62 lowercase letters, digits or `_`.
    static func roleName(_ text: String) -> String? {
        text.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) != nil ? text : nil
    }

    /// The first folder that exists among the configured one and the usual install places.
    public static func locate(_ configured: String?, installed: String, development: String) -> URL {
        if let configured { return URL(fileURLWithPath: configured) }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [
            executable.deletingLastPathComponent().appendingPathComponent("../share/coupond/\(development)").path,
            installed,
            FileManager.default.currentDirectoryPath + "/" + development,
        ]
        var isDirectory: ObjCBool = false
        let found = candidates.first { FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) }
        return URL(fileURLWithPath: found ?? candidates.last!).standardizedFileURL
    }

    /// The channels whose messages carry short links, served by the HTTP listener; `nil` without a public base URL.
    public var shortLinks: ShortLinks? {
        ShortLinks(publicBaseURL: publicBaseURL, email: shortEmailLinks, sms: shortSMSLinks)
    }

    /// The safeguards of `coupond run`'s connections. A transaction left open by a frozen instance must end before
    /// its lease does, or its row locks would keep the instance that takes over waiting: unless set, the idle timeout
    /// is half a lease, at most 10 seconds.
    public var connectionSafeguards: ConnectionSafeguards {
        var safeguards = safeguards
        safeguards.idleInTransactionTimeout = idleInTransactionTimeout ?? min(10, leaseSeconds / 2)
        return safeguards
    }

    public var templatesDirectory: URL {
        Self.locate(templatesPath, installed: "/usr/share/coupond/templates", development: "templates")
    }

    public var sqlDirectory: URL {
        Self.locate(sqlPath, installed: "/usr/share/coupond/sql", development: "sql")
    }
}

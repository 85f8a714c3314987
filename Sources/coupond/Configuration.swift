import Foundation
import Messages
import Postgres
import Storage

/// Settings from the configuration file (JSON), with environment variables taking precedence.
///
/// Every setting is optional; README lists them with their defaults. A wrong or unknown setting is a
/// ``ConfigurationError`` that names it.
struct Configuration {
    struct Gateway {
        /// `webhook`, `sendgrid` (email) or `twilio` (SMS).
        var provider = "webhook"
        var url: String?
        var from: String?
        var accountSID: String?
        var credentialFile: String?
        var ratePerSecond: Double?
        var connectTimeout = 5.0
        var timeout = 10.0
        /// A cap on failed attempts per message on top of the time budget; `nil` for none.
        var maxAttempts: Int?
        /// How long a message is retried after its first attempt.
        var retryBudget = 15.0 * 60
        /// Email only: recipients per request for a gateway that takes many (SendGrid: up to 1,000).
        var recipientsPerRequest = 1
        /// What happens to a message that may have gone out, where the provider neither drops repeats nor can be
        /// asked (SendGrid): `skip` fails it as delivery unconfirmed, `resend` sends it again.
        var onUnknown = "skip"
        /// Seconds between an unanswered request and the lookup of its message in the provider's records (Twilio).
        var reconcileAfter = 10.0
        /// Failures in a row (no connection, timeout, 5xx) after which the gateway's requests wait for it.
        var breakerFailures = 10
    }

    var databaseURL: String?
    /// Keepalives and timeouts of `coupond run`'s connections (see ``connectionSafeguards``).
    var safeguards = ConnectionSafeguards()
    /// `database.idle_in_transaction_timeout_seconds`, when set.
    var idleInTransactionTimeout: Double?
    /// The roles `coupond migrate` creates and grants.
    var roles = RoleNames()
    /// Whether the scheduler listens for notifications (`false`: poll only, for transaction-pooling proxies).
    var listen = true
    var templatesPath: String?
    var sqlPath: String?
    var instanceName: String?
    var pollInterval = 5.0
    var leaseSeconds = 30.0
    var batchSize = 500
    var batchesInFlight = 4
    var maxSendAttempts = 20
    var maxConcurrentSends = 4
    var maxInFlight = 128
    var preparationThreads = ProcessInfo.processInfo.activeProcessorCount
    var shutdownGrace = 10.0
    var email = Gateway()
    var sms = Gateway()
    var smsPricePerSegment: Decimal?
    var publicBaseURL: String?
    var claimKeyFile: String?
    var reportKeyFile: String?
    /// `links.short_sms_links`: whether SMS carry `<public_base_url>/c/<code>` (with a public base URL).
    var shortSMSLinks = true
    /// `links.short_email_links`: whether emails carry `<public_base_url>/e/<code>`, which records clicks.
    var shortEmailLinks = false
    /// `http.listen`: where `coupond run` serves its HTTP endpoints; off when `nil`.
    var httpListen: (host: String, port: Int)?
    /// `http.claims_key_file`: the bearer key `POST /claims` requires.
    var claimsKeyFile: String?

    static let knownKeys: [String: Set<String>] = [
        "": ["database", "paths", "engine", "email", "sms", "links", "http"],
        "database": [
            "url", "keepalives_idle_seconds", "tcp_user_timeout_seconds", "statement_timeout_seconds",
            "idle_in_transaction_timeout_seconds", "daemon_role", "platform_role", "readonly_role",
        ],
        "paths": ["templates", "sql"],
        "engine": [
            "instance_name", "poll_interval_seconds", "lease_seconds", "batch_size", "batches_in_flight",
            "max_send_attempts",
            "max_concurrent_sends",
            "max_in_flight", "preparation_threads", "shutdown_grace_seconds", "listen",
        ],
        "email": [
            "provider", "url", "from", "credential_file", "rate_per_second", "connect_timeout_seconds",
            "timeout_seconds", "max_attempts", "retry_budget_seconds", "recipients_per_request", "on_unknown",
            "breaker_failures",
        ],
        "sms": [
            "provider", "url", "from", "account_sid", "credential_file", "rate_per_second",
            "connect_timeout_seconds", "timeout_seconds", "max_attempts", "retry_budget_seconds", "price_per_segment",
            "on_unknown", "reconcile_after_seconds", "breaker_failures",
        ],
        "links": ["public_base_url", "claim_key_file", "report_key_file", "short_sms_links", "short_email_links"],
        "http": ["listen", "claims_key_file"],
    ]

    /// Reads `path` when given, then applies the environment.
    ///
    /// - Throws: ``ConfigurationError`` naming the setting that is wrong.
    static func load(path: String?, environment: [String: String]) throws -> Configuration {
        var configuration = Configuration()
        var settings = Settings(values: [:], source: "environment")
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(setting: path, reason: "cannot be read")
            }
            guard let object = try? JSONSerialization.jsonObject(with: data), let values = object as? [String: Any]
            else { throw ConfigurationError(setting: path, reason: "is not a JSON object") }
            settings = Settings(values: values, source: path)
            try settings.rejectUnknown(knownKeys)
        }
        try configuration.read(settings)
        try configuration.apply(environment)
        return configuration
    }

    private mutating func read(_ settings: Settings) throws {
        databaseURL = try settings.string("database.url")
        safeguards.keepalivesIdle =
            try settings.number("database.keepalives_idle_seconds", positive: false) ?? safeguards.keepalivesIdle
        safeguards.tcpUserTimeout =
            try settings.number("database.tcp_user_timeout_seconds", positive: false) ?? safeguards.tcpUserTimeout
        safeguards.statementTimeout =
            try settings.number("database.statement_timeout_seconds", positive: false) ?? safeguards.statementTimeout
        idleInTransactionTimeout = try settings.number(
            "database.idle_in_transaction_timeout_seconds",
            positive: false
        )
        roles.daemon = try settings.roleName("database.daemon_role") ?? roles.daemon
        roles.platform = try settings.roleName("database.platform_role") ?? roles.platform
        roles.readonly = try settings.roleName("database.readonly_role") ?? roles.readonly
        listen = try settings.bool("engine.listen") ?? listen
        templatesPath = try settings.string("paths.templates")
        sqlPath = try settings.string("paths.sql")
        instanceName = try settings.string("engine.instance_name")
        pollInterval = try settings.number("engine.poll_interval_seconds", positive: true) ?? pollInterval
        leaseSeconds = try settings.number("engine.lease_seconds", positive: true) ?? leaseSeconds
        batchSize = try settings.integer("engine.batch_size") ?? batchSize
        batchesInFlight = try settings.integer("engine.batches_in_flight") ?? batchesInFlight
        maxSendAttempts = try settings.integer("engine.max_send_attempts") ?? maxSendAttempts
        maxConcurrentSends = try settings.integer("engine.max_concurrent_sends") ?? maxConcurrentSends
        maxInFlight = try settings.integer("engine.max_in_flight") ?? maxInFlight
        preparationThreads = try settings.integer("engine.preparation_threads") ?? preparationThreads
        shutdownGrace = try settings.number("engine.shutdown_grace_seconds", positive: false) ?? shutdownGrace
        for channel in ["email", "sms"] {
            var gateway = Gateway()
            gateway.provider = try settings.string("\(channel).provider") ?? gateway.provider
            gateway.url = try settings.string("\(channel).url")
            gateway.from = try settings.string("\(channel).from")
            gateway.accountSID = channel == "sms" ? try settings.string("sms.account_sid") : nil
            gateway.credentialFile = try settings.string("\(channel).credential_file")
            gateway.ratePerSecond = try settings.number("\(channel).rate_per_second", positive: true)
            gateway.connectTimeout =
                try settings.number("\(channel).connect_timeout_seconds", positive: true) ?? gateway.connectTimeout
            gateway.timeout = try settings.number("\(channel).timeout_seconds", positive: true) ?? gateway.timeout
            gateway.maxAttempts = try settings.integer("\(channel).max_attempts")
            gateway.retryBudget =
                try settings.number("\(channel).retry_budget_seconds", positive: true) ?? gateway.retryBudget
            gateway.onUnknown = try settings.string("\(channel).on_unknown") ?? gateway.onUnknown
            gateway.breakerFailures = try settings.integer("\(channel).breaker_failures") ?? gateway.breakerFailures
            if channel == "sms" {
                gateway.reconcileAfter =
                    try settings.number("sms.reconcile_after_seconds", positive: false) ?? gateway.reconcileAfter
            }
            if channel == "email" {
                gateway.recipientsPerRequest =
                    try settings.integer("email.recipients_per_request") ?? gateway.recipientsPerRequest
            }
            if channel == "email" { email = gateway } else { sms = gateway }
        }
        if let price = try settings.string("sms.price_per_segment") {
            smsPricePerSegment = try Self.price(price, setting: "sms.price_per_segment")
        }
        publicBaseURL = try settings.string("links.public_base_url")
        claimKeyFile = try settings.string("links.claim_key_file")
        reportKeyFile = try settings.string("links.report_key_file")
        shortSMSLinks = try settings.bool("links.short_sms_links") ?? shortSMSLinks
        shortEmailLinks = try settings.bool("links.short_email_links") ?? shortEmailLinks
        if let listen = try settings.string("http.listen") {
            httpListen = try Self.listenAddress(listen, setting: "http.listen")
        }
        claimsKeyFile = try settings.string("http.claims_key_file")
    }

    private mutating func apply(_ environment: [String: String]) throws {
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
            smsPricePerSegment = try Self.price(text, setting: "COUPOND_SMS_PRICE_PER_SEGMENT")
        }
        if let text = environment["COUPOND_POLL_INTERVAL_SECONDS"] {
            guard let value = Double(text), value > 0 else {
                throw ConfigurationError(setting: "COUPOND_POLL_INTERVAL_SECONDS", reason: "must be a positive number")
            }
            pollInterval = value
        }
        if let text = environment["COUPOND_LEASE_SECONDS"] {
            guard let value = Double(text), value > 0 else {
                throw ConfigurationError(setting: "COUPOND_LEASE_SECONDS", reason: "must be a positive number")
            }
            leaseSeconds = value
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

    /// `host:port`, `[v6 address]:port` or `:port` (every address); port 0 lets the system choose.
    static func listenAddress(_ text: String, setting: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { throw ConfigurationError(setting: setting, reason: "must be host:port, such as 127.0.0.1:8080") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    static func price(_ text: String, setting: String) throws -> Decimal {
        guard text.range(of: #"^[0-9]+(\.[0-9]+)?$"#, options: .regularExpression) != nil,
            let price = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX"))
        else { throw ConfigurationError(setting: setting, reason: "\"\(text)\" is not a price") }
        return price
    }

    /// The first folder that exists among the configured one and the usual install places.
    static func locate(_ configured: String?, installed: String, development: String) -> URL {
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
    var shortLinks: ShortLinks? {
        ShortLinks(publicBaseURL: publicBaseURL, email: shortEmailLinks, sms: shortSMSLinks)
    }

    /// The safeguards of `coupond run`'s connections. A transaction left open by a frozen instance must end before
    /// its lease does, or its row locks would keep the instance that takes over waiting: unless set, the idle timeout
    /// is half a lease, at most 10 seconds.
    var connectionSafeguards: ConnectionSafeguards {
        var safeguards = safeguards
        safeguards.idleInTransactionTimeout = idleInTransactionTimeout ?? min(10, leaseSeconds / 2)
        return safeguards
    }

    var templatesDirectory: URL {
        Self.locate(templatesPath, installed: "/usr/share/coupond/templates", development: "templates")
    }

    var sqlDirectory: URL {
        Self.locate(sqlPath, installed: "/usr/share/coupond/sql", development: "sql")
    }
}

/// A configuration value that is missing or wrong, naming the setting.
struct ConfigurationError: Error, CustomStringConvertible {
    var setting: String
    var reason: String
    var description: String { "configuration: \(setting) \(reason)" }
}

/// Typed reads of dotted settings from a parsed JSON object, with errors that name the setting and the file.
private struct Settings {
    var values: [String: Any]
    var source: String

    func rejectUnknown(_ known: [String: Set<String>]) throws {
        for (section, value) in values {
            guard known[""]!.contains(section) else {
                throw ConfigurationError(setting: section, reason: "is not a known setting (in \(source))")
            }
            guard let object = value as? [String: Any] else {
                throw ConfigurationError(setting: section, reason: "must be an object (in \(source))")
            }
            for key in object.keys where !(known[section]?.contains(key) ?? false) {
                throw ConfigurationError(setting: "\(section).\(key)", reason: "is not a known setting (in \(source))")
            }
        }
    }

    private func raw(_ setting: String) -> Any? {
        let parts = setting.split(separator: ".", maxSplits: 1).map(String.init)
        return (values[parts[0]] as? [String: Any])?[parts[1]]
    }

    private func wrong(_ setting: String, _ expected: String) -> ConfigurationError {
        ConfigurationError(setting: setting, reason: "must be \(expected) (in \(source))")
    }

    func string(_ setting: String) throws -> String? {
        guard let value = raw(setting) else { return nil }
        guard let text = value as? String else { throw wrong(setting, "a string") }
        return text
    }

    func bool(_ setting: String) throws -> Bool? {
        guard let value = raw(setting) else { return nil }
        guard let number = value as? NSNumber, String(cString: number.objCType) == "c" else {
            throw wrong(setting, "true or false")
        }
        return number.boolValue
    }

    /// A PostgreSQL role name: a lowercase letter or underscore, then up to 62 lowercase letters, digits or `_`.
    func roleName(_ setting: String) throws -> String? {
        guard let name = try string(setting) else { return nil }
        guard name.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) != nil else {
            throw wrong(setting, "a role name of lowercase letters, digits and underscores")
        }
        return name
    }

    func number(_ setting: String, positive: Bool) throws -> Double? {
        guard let value = raw(setting) else { return nil }
        // JSON true/false also arrive as NSNumber; their type code is "c".
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c", number.doubleValue >= 0,
            !positive || number.doubleValue > 0
        else { throw wrong(setting, positive ? "a positive number" : "a number, 0 or more") }
        return number.doubleValue
    }

    func integer(_ setting: String) throws -> Int? {
        guard let number = try self.number(setting, positive: true) else { return nil }
        guard number == number.rounded(), number <= 1_000_000 else { throw wrong(setting, "a whole number") }
        return Int(number)
    }
}

import Curl
import Delivery
import Dispatch
import Engine
public import Foundation
import HTTPEndpoints
public import Logging
import Messages
import Metrics
import Postgres
import Prometheus
import Signing
import Storage
public import Systemd

/// Where swift-metrics' counters, timers and gauges of this process live, for `GET /metrics`.
let metricsRegistry = PrometheusCollectorRegistry()

/// `coupond run`'s start found no database within its minute of retries.
public struct DatabaseUnavailable: Error, CustomStringConvertible {
    public var message: String
    public var description: String { "database unavailable: \(message)" }
}

/// The composition root of `coupond run`: the engine, the gateways, the HTTP endpoints and the systemd supervision,
/// built from the configuration and run until a stop signal.
public struct Daemon: Sendable {
    /// Process-wide set-up, once, before anything logs or makes a metric: log lines to the journal (when standard
    /// error is the journal's stream) or standard error at `level`, metrics to the registry `GET /metrics` exports,
    /// and bounded malloc growth.
    public static func bootstrapProcess(logLevel level: Logger.Level) -> Logger {
        boundMallocGrowth()
        let toJournal = JournalLogHandler.standardErrorIsJournal()
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                toJournal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        // Before anything makes a metric: handles made earlier would stay with the no-op backend.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metricsRegistry))
        return Logger(label: "coupond")
    }

    /// Keeps the daemon's memory flat however long a send runs. glibc gives each thread that allocates at the same
    /// time its own arena (the preparation pool, the feeder, the worker and the libcurl driver all do), and raises
    /// its mmap threshold after large blocks are freed, so that batch request bodies of hundreds of kilobytes end up
    /// in those arenas; both let peak memory creep up over a long send (55 MiB at 100,000 customers, up to 63 MiB at
    /// 1,000,000). Two arenas and a fixed threshold keep it at 54–55 MiB at both sizes, at no measurable cost in
    /// speed. An operator's MALLOC_ARENA_MAX or MALLOC_MMAP_THRESHOLD_ still wins.
    static func boundMallocGrowth() {
        let environment = ProcessInfo.processInfo.environment
        // <malloc.h>: M_ARENA_MAX is -8, M_MMAP_THRESHOLD is -3.
        if environment["MALLOC_ARENA_MAX"] == nil { _ = glibcMallopt(-8, 2) }
        if environment["MALLOC_MMAP_THRESHOLD_"] == nil { _ = glibcMallopt(-3, 128 * 1024) }
    }

    let settings: EngineSettings
    let dependencies: EngineDependencies
    /// Where the HTTP endpoints listen, and the key `POST /claims` wants; no listener when `nil`.
    let http: (host: String, port: Int)?
    let httpLimits: ListenerLimits
    let claimsKey: String?
    /// How `POST /sms/replies` knows the SMS gateway; `nil` when no SMS gateway is configured.
    let smsReplies: SMSReplyAuthentication?
    /// Checks the tokens of `/u/<token>`, the links every email carries.
    let unsubscribeTokens: UnsubscribeTokens
    let driver: CurlMultiDriver
    let logger: Logger
    let connect: @Sendable () throws -> PostgresConnection

    /// - Throws: ``ConfigurationError`` naming the setting that keeps the daemon from starting.
    public init(configuration: Configuration, databaseURL: String?, logger: Logger) throws {
        self.logger = logger
        let url = databaseURL ?? configuration.databaseURL
        if let url, let problem = ConnectionString.problem(url) {
            throw ConfigurationError(
                setting: databaseURL == nil ? "database.url" : "--database-url",
                reason: "is not a connection string libpq can use: \(problem)"
            )
        }
        let safeguards = configuration.connectionSafeguards
        connect = {
            try PostgresConnection(connectionString: url, applicationName: "coupond run", safeguards: safeguards)
        }
        let templates: LocalizedTemplates
        let notices: NoticeTemplates
        let warnings: CouponWarningTemplates
        do {
            templates = try LocalizedTemplates(
                directory: configuration.templatesDirectory,
                defaultLanguage: configuration.templatesLanguage
            )
            notices = try NoticeTemplates(directory: configuration.templatesDirectory)
            warnings = try CouponWarningTemplates(directory: configuration.templatesDirectory)
        } catch let error as TemplateError {
            throw ConfigurationError(setting: "paths.templates", reason: "is unusable: \(error)")
        }
        guard let claimKeyFile = configuration.claimKeyFile else {
            throw ConfigurationError(
                setting: "links.claim_key_file",
                reason: "is required: a file of 32 or more random bytes (or the systemd credential claim-key)"
            )
        }
        let claimKey = try Self.secret(claimKeyFile, setting: "links.claim_key_file", minimumBytes: 32)
        var reportLinks: ReportLinkSigner?
        if let base = configuration.publicBaseURL {
            guard let keyFile = configuration.reportKeyFile else {
                throw ConfigurationError(
                    setting: "links.report_key_file",
                    reason: "is required with links.public_base_url"
                )
            }
            guard base.hasPrefix("https://") || base.hasPrefix("http://") else {
                throw ConfigurationError(setting: "links.public_base_url", reason: "must be an http(s) URL")
            }
            reportLinks = ReportLinkSigner(
                key: try Self.secret(keyFile, setting: "links.report_key_file", minimumBytes: 32),
                baseURL: base
            )
        }
        let driver = CurlMultiDriver(
            maxInFlight: configuration.maxInFlight,
            maxConnectionsPerHost: configuration.maxInFlight
        )
        self.driver = driver
        let email = try Self.dispatcher(configuration.email, channel: "email", driver: driver, logger: logger)
        let sms = try Self.dispatcher(configuration.sms, channel: "sms", driver: driver, logger: logger)
        if email == nil && sms == nil {
            throw ConfigurationError(setting: "email.url", reason: "or sms.url is required: no gateway is configured")
        }
        var unsubscribeLinks: UnsubscribeLinks?
        if email != nil {
            // Gmail and Yahoo take bulk email only with a one-click unsubscribe link, and the law wants an opt-out.
            guard let base = configuration.publicBaseURL else {
                throw ConfigurationError(
                    setting: "links.public_base_url",
                    reason: "is required with email: every email carries a one-click unsubscribe link served there"
                )
            }
            if !base.hasPrefix("https://") {
                logger.warning(
                    "links.public_base_url is not https: inboxes show one-click unsubscribe only for https links",
                    metadata: ["url": "\(base)"]
                )
            }
            unsubscribeLinks = UnsubscribeLinks(tokens: UnsubscribeTokens(key: claimKey), baseURL: base)
        }
        self.unsubscribeTokens = unsubscribeLinks?.tokens ?? UnsubscribeTokens(key: claimKey)
        http = configuration.httpListen
        httpLimits = configuration.httpLimits
        smsReplies = try Self.smsReplyAuthentication(configuration)
        claimsKey = try configuration.claimsKeyFile.map {
            try Self.tokenSecret($0, setting: "http.claims_key_file", minimumBytes: 16)
        }
        settings = EngineSettings(
            instanceName: configuration.instanceName ?? "\(ProcessInfo.processInfo.hostName):\(getpid())",
            pollInterval: configuration.pollInterval,
            leaseSeconds: configuration.leaseSeconds,
            batchSize: configuration.batchSize,
            batchesInFlight: configuration.batchesInFlight,
            maxConcurrentSends: configuration.maxConcurrentSends,
            preparationThreads: configuration.preparationThreads,
            smsPricePerSegment: configuration.smsPricePerSegment,
            shutdownGrace: configuration.shutdownGrace,
            maxSendAttempts: configuration.maxSendAttempts,
            listen: configuration.listen,
            shortLinks: configuration.shortLinks
        )
        dependencies = EngineDependencies(
            connect: connect,
            email: email,
            sms: sms,
            templates: templates,
            notices: notices,
            warnings: warnings,
            tokens: ClaimTokenIssuer(key: claimKey),
            reportLinks: reportLinks,
            unsubscribeLinks: unsubscribeLinks,
            stopDelivery: { driver.shutdown() }
        )
    }

    /// Twilio signs the replies it forwards with the account's auth token, over the public URL it calls; the SMS
    /// webhook presents the token Coupond sends it.
    static func smsReplyAuthentication(_ configuration: Configuration) throws -> SMSReplyAuthentication? {
        guard configuration.sms.url != nil, let file = configuration.sms.credentialFile else { return nil }
        let token = try tokenSecret(file, setting: "sms.credential_file")
        switch configuration.sms.provider {
        case "twilio":
            guard var base = configuration.publicBaseURL else { return nil }
            while base.hasSuffix("/") { base.removeLast() }
            return .twilio(authToken: token, publicURL: base + "/sms/replies")
        default:
            return .bearer(token: token)
        }
    }

    /// Reads a secret file, naming the setting (never the content) when it is unusable.
    public static func secret(_ path: String, setting: String, minimumBytes: Int = 1) throws -> Data {
        guard var data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(setting: setting, reason: "names \(path), which cannot be read")
        }
        while let last = data.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { data.removeLast() }
        guard data.count >= minimumBytes else {
            throw ConfigurationError(setting: setting, reason: "must hold at least \(minimumBytes) bytes")
        }
        return data
    }

    /// Reads a secret that travels as a bearer token or in a signature: visible ASCII without spaces (what `openssl
    /// rand -base64 32` prints). A key of other bytes could not be sent in a header at all, and decoding it to text
    /// would map different byte strings to one key; this one reads back byte for byte and compares as bytes.
    public static func tokenSecret(_ path: String, setting: String, minimumBytes: Int = 1) throws -> String {
        let data = try secret(path, setting: setting, minimumBytes: minimumBytes)
        guard data.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ConfigurationError(
                setting: setting,
                reason:
                    "must hold printable ASCII without spaces or control characters, such as `openssl rand -base64 32` prints"
            )
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Runs until SIGTERM or SIGINT, then finishes in-flight messages and returns.
    ///
    /// - Throws: ``DatabaseUnavailable`` when the database stays away at start, ``ConfigurationError`` when its
    ///   schema is at another version or the HTTP listener cannot start.
    public func run(notifier: SystemdNotifier?) throws {
        CurlEasyClient.globalInit()
        let stop = StopSignal()
        let signals = Self.handleSignals { signal in
            logger.notice("stop requested", metadata: ["signal": "\(signal)"])
            notifier?.stopping(status: "stopping: finishing in-flight messages")
            stop.request()
        }
        defer { signals.forEach { $0.cancel() } }

        try checkDatabase(notifier: notifier, stop: stop)
        driver.start()
        let engine = Engine(settings: settings, dependencies: dependencies, logger: logger)
        let server = try startEndpoints(engine: engine)
        defer { server?.stop() }
        notifier?.ready(status: "ready; waiting for due sends")
        logger.notice("coupond ready", metadata: ["instance": "\(settings.instanceName)"])
        Self.superviseWatchdog(engine: engine, notifier: notifier, stop: stop)
        engine.run(stop: stop)
        driver.shutdown()
        logger.notice("coupond stopped")
    }

    /// Starts the HTTP listener when `http.listen` is set.
    private func startEndpoints(engine: Engine) throws -> EndpointServer? {
        guard let http else { return nil }
        let server: EndpointServer
        do {
            server = try EndpointServer.start(
                host: http.host,
                port: http.port,
                dependencies: EndpointDependencies(
                    connect: connect,
                    reportLinks: dependencies.reportLinks,
                    claimsKey: claimsKey,
                    tokens: dependencies.tokens,
                    metrics: metricsRegistry,
                    schedulerHeartbeat: { engine.heartbeat },
                    smsReplies: smsReplies,
                    unsubscribeTokens: unsubscribeTokens,
                    limits: httpLimits
                ),
                logger: logger
            )
        } catch let error as EndpointError {
            throw ConfigurationError(setting: "http.listen", reason: "is unusable: \(error)")
        }
        logger.notice("http listening", metadata: ["http.address": "\(http.host):\(server.port)"])
        return server
    }

    /// Waits for the database (asking systemd for more start time meanwhile) and checks the schema version.
    private func checkDatabase(notifier: SystemdNotifier?, stop: StopSignal) throws {
        var delay = 0.5
        let deadline = Date().addingTimeInterval(60)
        while true {
            do {
                let connection = try connect()
                defer { connection.close() }
                let version = try Migrator.appliedVersion(on: connection)
                guard version == Schema.expectedVersion else {
                    throw ConfigurationError(
                        setting: "database",
                        reason: "has schema version \(version), but this coupond needs \(Schema.expectedVersion): "
                            + (version < Schema.expectedVersion ? "run coupond migrate" : "upgrade coupond")
                    )
                }
                return
            } catch let error as PostgresError where error.code == .connectionFailed {
                guard Date() < deadline, !stop.isRequested else {
                    throw DatabaseUnavailable(message: error.message)
                }
                logger.warning("database unavailable at start; retrying", metadata: ["error": "\(error.message)"])
                notifier?.extendTimeout(seconds: delay + 5)
                notifier?.status("waiting for the database")
                stop.sleep(delay)
                delay = min(delay * 2, 5)
            }
        }
    }

    /// Pings the systemd watchdog while the engine's heartbeat advances, and keeps STATUS= current.
    ///
    /// The status line is refreshed every 2 seconds so that `systemctl status` shows a send's progress as it goes;
    /// the watchdog is pinged every `WATCHDOG_USEC/2`, and only when the scheduler went round since the last ping and
    /// every worker has shown progress within a lease (``Engine/workersAreProgressing``).
    private static func superviseWatchdog(engine: Engine, notifier: SystemdNotifier?, stop: StopSignal) {
        guard let notifier else { return }
        let watchdogInterval = SystemdNotifier.watchdogInterval()
        let statusInterval = min(2, watchdogInterval ?? 2)
        let thread = Thread {
            var lastBeat = engine.heartbeat
            var lastPing = Date()
            while !stop.sleep(statusInterval) {
                notifier.status(engine.statusLine)
                guard let watchdogInterval, Date().timeIntervalSince(lastPing) >= watchdogInterval else { continue }
                let beat = engine.heartbeat
                if beat != lastBeat && engine.workersAreProgressing { notifier.watchdog() }
                lastBeat = beat
                lastPing = Date()
            }
        }
        thread.name = "watchdog"
        thread.start()
    }

    /// Routes SIGTERM and SIGINT to `handler` instead of killing the process.
    static func handleSignals(_ handler: @escaping @Sendable (String) -> Void) -> [any DispatchSourceSignal] {
        [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")].map { number, name in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(name) }
            source.resume()
            return source
        }
    }
}

/// glibc's `mallopt(3)`, which Swift's Glibc module does not export (it lives in `<malloc.h>`).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32

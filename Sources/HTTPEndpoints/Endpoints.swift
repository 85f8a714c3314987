import Foundation
import Hummingbird
public import Logging
import Messages
import NIOCore
public import Postgres
public import Prometheus
import ServiceLifecycle
public import Signing
import Storage
import Synchronization

/// What the HTTP endpoints work with, made by `coupond run` from its configuration.
public struct EndpointDependencies: Sendable {
    /// Opens a database connection for the endpoints' own small pool.
    public var connect: @Sendable () throws -> PostgresConnection
    /// Checks report links; without it `/reports` answers 404.
    public var reportLinks: ReportLinkSigner?
    /// The bearer key `POST /claims` requires; without it the endpoint answers 404.
    public var claimsKey: String?
    /// Issues the claim token a short link leads to.
    public var tokens: ClaimTokenIssuer
    /// The registry behind swift-metrics, served at `/metrics`; without it the endpoint answers 404.
    public var metrics: PrometheusCollectorRegistry?
    /// A number that advances while the scheduler goes round (``Engine/heartbeat``), for `/healthz`.
    public var schedulerHeartbeat: @Sendable () -> UInt64
    /// Seconds without the heartbeat advancing after which `/healthz` answers 503.
    public var heartbeatTimeout: Double
    /// How `POST /sms/replies` checks its caller; without it the endpoint answers 404.
    public var smsReplies: SMSReplyAuthentication?
    /// Caps and deadlines of the listener's connections, and of report downloads.
    public var limits: ListenerLimits
    /// Checks the tokens of unsubscribe links (`/u/<token>`); without it every such link is refused.
    public var unsubscribeTokens: UnsubscribeTokens?

    public init(
        connect: @escaping @Sendable () throws -> PostgresConnection,
        reportLinks: ReportLinkSigner?,
        claimsKey: String?,
        tokens: ClaimTokenIssuer,
        metrics: PrometheusCollectorRegistry?,
        schedulerHeartbeat: @escaping @Sendable () -> UInt64,
        heartbeatTimeout: Double = 30,
        smsReplies: SMSReplyAuthentication? = nil,
        unsubscribeTokens: UnsubscribeTokens? = nil,
        limits: ListenerLimits = ListenerLimits()
    ) {
        self.limits = limits
        self.connect = connect
        self.reportLinks = reportLinks
        self.claimsKey = claimsKey
        self.tokens = tokens
        self.metrics = metrics
        self.schedulerHeartbeat = schedulerHeartbeat
        self.heartbeatTimeout = heartbeatTimeout
        self.smsReplies = smsReplies
        self.unsubscribeTokens = unsubscribeTokens
    }
}

/// The daemon's HTTP endpoints, meant to sit behind the platform's reverse proxy: the failure report behind the
/// merchant's signed link, the store's claim call, customers' short links, replies and unsubscribes, and health for the
/// orchestrator.
///
/// Handlers run on NIO's event loops and hand every database call to ``EndpointDatabase``'s blocking pool.
final class Endpoints: Sendable {
    let dependencies: EndpointDependencies
    let database: EndpointDatabase
    let logger: Logger
    /// The heartbeat last seen and when it was seen to change.
    private let lastBeat: Mutex<(value: UInt64, changedAt: ContinuousClock.Instant)>
    /// Report downloads streaming now, each with a thread and a database connection of its own.
    let reportDownloads = Mutex(0)

    init(dependencies: EndpointDependencies, logger: Logger) {
        self.dependencies = dependencies
        self.database = EndpointDatabase(connect: dependencies.connect)
        self.logger = logger
        lastBeat = Mutex((dependencies.schedulerHeartbeat(), .now))
    }

    func router() -> Router<BasicRequestContext> {
        // HEAD answers every GET route as GET would, without the body: link checkers and mail scanners use it.
        let router = Router(options: .autoGenerateHeadEndpoints)
        var allowed: [String: [HTTPRequest.Method]] = [:]
        func get(_ path: String, _ handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Response)
        {
            router.get(RouterPath(path), use: handler)
            allowed[path, default: []] += [.get, .head]
        }
        func post(
            _ path: String,
            _ handler: @escaping @Sendable (Request, BasicRequestContext) async throws -> Response
        ) {
            router.post(RouterPath(path), use: handler)
            allowed[path, default: []].append(.post)
        }
        get("healthz") { [self] _, _ in health() }
        get("readyz") { [self] _, _ in try await readiness() }
        get("metrics") { [self] _, _ in try await metrics() }
        get("reports/:send") { [self] request, _ in try await report(request) }
        post("claims") { [self] request, _ in try await claim(request) }
        post("sms/replies") { [self] request, _ in try await smsReply(request) }
        get("u/:token") { [self] _, context in try await unsubscribePage(context.parameters.get("token") ?? "") }
        post("u/:token") { [self] request, context in
            try await unsubscribe(context.parameters.get("token") ?? "", request: request)
        }
        for channel in Messages.Channel.allCases {
            get("\(ShortLinks.pathSegment(channel))/:code") { [self] _, context in
                try await followShortLink(context.parameters.get("code") ?? "", channel: channel)
            }
        }
        // Any other method on a known path is 405 with the methods it has, not a 404 that reads as a dead link.
        for (path, methods) in allowed {
            let allow = methods.map(\.rawValue).joined(separator: ", ")
            for method in Self.otherMethods where !methods.contains(method) {
                router.on(RouterPath(path), method: method) { _, _ in
                    Response(
                        status: .methodNotAllowed,
                        headers: [.allow: allow, .contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: "method not allowed; use \(allow)\n"))
                    )
                }
            }
        }
        return router
    }

    /// The methods a path without them answers 405 to.
    static let otherMethods: [HTTPRequest.Method] = [.get, .post, .put, .delete, .patch, .options, .trace]

    // MARK: - Health

    /// 200 while the scheduler loop goes round; 503 when it has not for `heartbeatTimeout` seconds.
    func health() -> Response {
        let beat = dependencies.schedulerHeartbeat()
        let now = ContinuousClock.now
        let silent = lastBeat.withLock { last -> Duration in
            if last.value != beat { last = (beat, now) }
            return now - last.changedAt
        }
        if silent > .milliseconds(Int64(dependencies.heartbeatTimeout * 1000)) {
            return Self.text(.serviceUnavailable, "scheduler stalled: no pass for \(silent.components.seconds) s\n")
        }
        return Self.text(.ok, "ok\n")
    }

    /// 200 when the database answers and its schema is the version this binary expects.
    func readiness() async throws -> Response {
        do {
            let version = try await database.run { try Migrator.appliedVersion(on: $0) }
            guard version == Schema.expectedVersion else {
                return Self.text(
                    .serviceUnavailable,
                    "database schema is at version \(version); this coupond needs \(Schema.expectedVersion)\n"
                )
            }
            return Self.text(.ok, "ready\n")
        } catch let error as PostgresError {
            // The message can name the database's host and port: it goes to the log, not to whoever asked.
            logger.warning("readiness: database unavailable", metadata: ["error": "\(error.message)"])
            return Self.text(.serviceUnavailable, "database unavailable\n")
        }
    }

    // MARK: - Helpers

    static func text(_ status: HTTPResponse.Status, _ body: String, type: String = "text/plain; charset=utf-8")
        -> Response
    {
        Response(
            status: status,
            headers: [.contentType: type, .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body))
        )
    }
}

/// The running HTTP listener of `coupond run`.
public final class EndpointServer: Sendable {
    /// The port it listens on (the one asked for, or the one the system chose for port 0).
    public let port: Int
    private let task: Task<Void, any Error>
    private let group: ServiceGroup
    private let finished: DispatchSemaphore
    private let database: EndpointDatabase

    /// Binds `host:port` and serves in the background.
    ///
    /// - Throws: when the address cannot be bound within 10 seconds.
    public static func start(
        host: String,
        port: Int,
        dependencies: EndpointDependencies,
        logger: Logger
    ) throws -> EndpointServer {
        let endpoints = Endpoints(dependencies: dependencies, logger: logger)
        let bound = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<Int, any Error>?>(nil)
        let app = Application(
            router: endpoints.router(),
            server: .guardedHTTP1(limits: dependencies.limits, logger: logger),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "coupond"),
            onServerRunning: { channel in
                outcome.withLock { $0 = .success(channel.localAddress?.port ?? port) }
                bound.signal()
            },
            logger: logger
        )
        let finished = DispatchSemaphore(value: 0)
        // coupond run handles SIGTERM itself, and stops the server through the group's graceful shutdown: a
        // cancelled task would stop it too, but logs the interrupted connections as errors on every clean stop.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [], logger: logger)
        )
        let task = Task {
            defer { finished.signal() }
            do {
                try await group.run()
            } catch {
                outcome.withLock { if $0 == nil { $0 = .failure(error) } }
                bound.signal()
                throw error
            }
        }
        guard bound.wait(timeout: .now() + 10) == .success, let result = outcome.withLock({ $0 }) else {
            task.cancel()
            throw EndpointError("the HTTP listener did not start on \(host):\(port) within 10 seconds")
        }
        switch result {
        case .success(let boundPort):
            return EndpointServer(
                port: boundPort,
                task: task,
                group: group,
                finished: finished,
                database: endpoints.database
            )
        case .failure(let error):
            throw EndpointError("cannot listen on \(host):\(port): \(error)")
        }
    }

    private init(
        port: Int,
        task: Task<Void, any Error>,
        group: ServiceGroup,
        finished: DispatchSemaphore,
        database: EndpointDatabase
    ) {
        self.port = port
        self.task = task
        self.group = group
        self.finished = finished
        self.database = database
    }

    /// Stops accepting connections, lets requests in progress finish (up to 10 seconds), and closes the pool.
    public func stop() {
        let group = group
        Task { await group.triggerGracefulShutdown() }
        if finished.wait(timeout: .now() + 10) == .timedOut {
            task.cancel()
            _ = finished.wait(timeout: .now() + 2)
        }
        database.close()
    }
}

/// The HTTP listener could not start.
public struct EndpointError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

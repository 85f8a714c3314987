import Foundation
import Hummingbird
public import Logging
import Messages
import NIOCore
public import Postgres
public import Prometheus
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
        unsubscribeTokens: UnsubscribeTokens? = nil
    ) {
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

    init(dependencies: EndpointDependencies, logger: Logger) {
        self.dependencies = dependencies
        self.database = EndpointDatabase(connect: dependencies.connect)
        self.logger = logger
        lastBeat = Mutex((dependencies.schedulerHeartbeat(), .now))
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("healthz") { [self] _, _ in health() }
        router.get("readyz") { [self] _, _ in try await readiness() }
        router.get("metrics") { [self] _, _ in try await metrics() }
        router.get("reports/:send") { [self] request, _ in try await report(request) }
        router.post("claims") { [self] request, _ in try await claim(request) }
        router.post("sms/replies") { [self] request, _ in try await smsReply(request) }
        router.get("u/:token") { [self] _, context in try await unsubscribePage(context.parameters.get("token") ?? "") }
        router.post("u/:token") { [self] request, context in
            try await unsubscribe(context.parameters.get("token") ?? "", request: request)
        }
        for channel in Messages.Channel.allCases {
            router.get("\(ShortLinks.pathSegment(channel))/:code") { [self] _, context in
                try await followShortLink(context.parameters.get("code") ?? "", channel: channel)
            }
        }
        return router
    }

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
            return Self.text(.serviceUnavailable, "database unavailable: \(error.message)\n")
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
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "coupond"),
            onServerRunning: { channel in
                outcome.withLock { $0 = .success(channel.localAddress?.port ?? port) }
                bound.signal()
            },
            logger: logger
        )
        let finished = DispatchSemaphore(value: 0)
        let task = Task {
            defer { finished.signal() }
            do {
                // coupond run handles SIGTERM itself, and stops the server through this task.
                try await app.runService(gracefulShutdownSignals: [])
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
            return EndpointServer(port: boundPort, task: task, finished: finished, database: endpoints.database)
        case .failure(let error):
            throw EndpointError("cannot listen on \(host):\(port): \(error)")
        }
    }

    private init(port: Int, task: Task<Void, any Error>, finished: DispatchSemaphore, database: EndpointDatabase) {
        self.port = port
        self.task = task
        self.finished = finished
        self.database = database
    }

    /// Stops accepting connections, lets requests in progress finish (up to 10 seconds), and closes the pool.
    public func stop() {
        task.cancel()
        _ = finished.wait(timeout: .now() + 10)
        database.close()
    }
}

/// The HTTP listener could not start.
public struct EndpointError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

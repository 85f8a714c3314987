public import Delivery
import Foundation
public import Logging
public import Messages
public import Postgres
public import Signing
import Storage
import Synchronization

/// What the engine works with, made by `coupond run` from the configuration.
public struct EngineDependencies: Sendable {
    /// Opens a new database connection; each worker thread owns the one it gets.
    public var connect: @Sendable () throws -> PostgresConnection
    /// The email gateway, or `nil` when none is configured (email sends then fail with `system_error`).
    public var email: GatewayDispatcher?
    /// The SMS gateway, or `nil` when none is configured.
    public var sms: GatewayDispatcher?
    /// The customers' messages, per locale.
    public var templates: LocalizedTemplates
    public var notices: NoticeTemplates
    /// The coupon watch's warning to a merchant whose scheduled send would fail.
    public var warnings: CouponWarningTemplates
    public var tokens: ClaimTokenIssuer
    /// Signs failure-report links for the merchant notice; without it the notice has no link.
    public var reportLinks: ReportLinkSigner?
    /// Every email's one-click unsubscribe link; emails go without one only when this is `nil` (no email gateway).
    public var unsubscribeLinks: UnsubscribeLinks?
    /// Stops delivery: queued messages end as abandoned, running ones finish. Called when the shutdown grace ends.
    public var stopDelivery: @Sendable () -> Void

    public init(
        connect: @escaping @Sendable () throws -> PostgresConnection,
        email: GatewayDispatcher?,
        sms: GatewayDispatcher?,
        templates: LocalizedTemplates,
        notices: NoticeTemplates,
        warnings: CouponWarningTemplates,
        tokens: ClaimTokenIssuer,
        reportLinks: ReportLinkSigner?,
        unsubscribeLinks: UnsubscribeLinks?,
        stopDelivery: @escaping @Sendable () -> Void
    ) {
        self.connect = connect
        self.email = email
        self.sms = sms
        self.templates = templates
        self.notices = notices
        self.warnings = warnings
        self.tokens = tokens
        self.reportLinks = reportLinks
        self.unsubscribeLinks = unsubscribeLinks
        self.stopDelivery = stopDelivery
    }
}

/// The scheduler: finds due sends (on `NOTIFY coupond_sends` and on a poll), and runs each on a worker thread of
/// its own, up to ``EngineSettings/maxConcurrentSends``.
public final class Engine: Sendable {
    let settings: EngineSettings
    let dependencies: EngineDependencies
    let logger: Logger
    private let active = Mutex<Set<Int64>>([])
    /// Sends a worker could not take (group busy, lease held): not tried again before the given time.
    private let deferred = Mutex<[Int64: Date]>([:])
    private let wake = DispatchSemaphore(value: 0)
    private let heartbeatCounter = Atomic<UInt64>(0)
    /// When each running worker last showed progress (a lease renewed, a batch recorded).
    private let pulses = Mutex<[Int64: ContinuousClock.Instant]>([:])
    let progress = SendProgressBoard()

    public init(settings: EngineSettings, dependencies: EngineDependencies, logger: Logger) {
        self.settings = settings
        self.dependencies = dependencies
        var logger = logger
        logger[metadataKey: "instance"] = "\(settings.instanceName)"
        self.logger = logger
    }

    /// Advances every time the scheduler loop goes round; the systemd watchdog is fed only while it moves.
    public var heartbeat: UInt64 { heartbeatCounter.load(ordering: .relaxed) }

    /// Whether every running worker has shown progress within one lease: renewed its lease, recorded a batch, or
    /// retried a database that is away. A worker waiting on a gateway renews its lease meanwhile (a gateway that is
    /// down included), so only one stuck in a call that does not return falls silent. The systemd watchdog is fed only
    /// while this holds.
    public var workersAreProgressing: Bool {
        let now = ContinuousClock.now
        let interval = Duration.milliseconds(Int64(settings.leaseSeconds * 1000))
        return pulses.withLock { $0.values.allSatisfy { now - $0 <= interval } }
    }

    func pulse(sendID: Int64) {
        pulses.withLock { $0[sendID] = .now }
    }

    /// One readable line for `systemctl status`: each send being delivered with its sent, failed and total counts
    /// and its rate, or `idle`.
    public var statusLine: String { progress.statusLine() }

    /// Runs until `stop` is requested, then lets the workers finish their batch and give their sends back.
    public func run(stop: StopSignal) {
        logger.info("engine started")
        let watch = CouponWatch(settings: settings, dependencies: dependencies, logger: logger)
        let watchThread = Thread { watch.run(stop: stop) }
        watchThread.name = "coupon-watch"
        watchThread.start()
        var database = ListeningConnection(
            connect: dependencies.connect,
            channels: settings.listen ? ["coupond_sends"] : [],
            logger: logger,
            failure: "database unavailable; retrying"
        )
        var nextPoll = Date.distantPast
        var health = GatewayHealthReporter(
            instance: settings.instanceName,
            email: dependencies.email,
            sms: dependencies.sms
        )
        while !stop.isRequested {
            heartbeatCounter.add(1, ordering: .relaxed)
            database.run(stop: stop) { connection, fresh in
                if fresh { nextPoll = .distantPast }
                let store = EngineStore(connection: connection, owner: settings.instanceName, leaseSeconds: 0)
                if Date() >= nextPoll {
                    if let override = try store.clockOverride() {
                        logger.warning(
                            "coupond.clock_override is set: the rules run on a shifted clock (test or demo only)",
                            metadata: ["clock.override": "\(override)"]
                        )
                    }
                    startWorkers(for: try store.dueSendIDs(limit: settings.maxConcurrentSends * 4), stop: stop)
                    // Nothing waiting for a busy group is polled for: the send that holds the group changes status
                    // (a NOTIFY) or stops renewing its lease (a change this wait is computed to).
                    var wait = settings.pollInterval
                    if let untilChange = try store.secondsUntilNextChange() {
                        wait = min(wait, max(0.05, untilChange))
                    }
                    nextPoll = Date().addingTimeInterval(wait)
                }
                try health.report(to: GatewayHealthStore(connection: connection))
                let timeout = min(1, max(0.01, nextPoll.timeIntervalSinceNow))
                // A send changed status or a worker finished: deferred sends may be free to go now.
                let notified: Bool
                if settings.listen {
                    notified = !(try connection.waitForNotifications(timeout: timeout)).isEmpty
                } else {
                    notified = wake.wait(timeout: .now() + timeout) == .success
                }
                if notified || wake.wait(timeout: .now()) == .success {
                    deferred.withLock { $0.removeAll() }
                    nextPoll = .distantPast
                }
            }
        }
        database.close()
        logger.notice("stopping: waiting for workers to finish their batch")
        let graceEnd = Date().addingTimeInterval(settings.shutdownGrace)
        while active.withLock({ !$0.isEmpty }) && Date() < graceEnd { Thread.sleep(forTimeInterval: 0.05) }
        dependencies.stopDelivery()
        while active.withLock({ !$0.isEmpty }) { Thread.sleep(forTimeInterval: 0.05) }
        logger.notice("engine stopped")
    }

    private func startWorkers(for sendIDs: [Int64], stop: StopSignal) {
        let now = Date()
        let waiting = deferred.withLock { deferred in
            deferred = deferred.filter { $0.value > now }
            return Set(deferred.keys)
        }
        for sendID in sendIDs where !waiting.contains(sendID) {
            let started = active.withLock { running -> Bool in
                guard running.count < settings.maxConcurrentSends, !running.contains(sendID) else { return false }
                running.insert(sendID)
                return true
            }
            guard started else { continue }
            let worker = SendWorker(sendID: sendID, engine: self, stop: stop)
            let retryAfter = min(settings.pollInterval, 1)
            pulse(sendID: sendID)
            let thread = Thread { [self] in
                let worked = worker.run()
                pulses.withLock { _ = $0.removeValue(forKey: sendID) }
                active.withLock { _ = $0.remove(sendID) }
                if worked {
                    // Another send of the same group may be waiting for this one.
                    wake.signal()
                } else {
                    // Another instance took it first, or its group became busy meanwhile: look again after a second
                    // (or a NOTIFY when a send changes status), not in a tight loop.
                    deferred.withLock { $0[sendID] = Date().addingTimeInterval(retryAfter) }
                }
            }
            thread.name = "send-\(sendID)"
            thread.start()
        }
    }
}

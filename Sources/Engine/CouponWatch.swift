import Curl
import Delivery
import Dispatch
import Foundation
import Logging
import Messages
import Postgres
import Storage
import Synchronization

/// Watches scheduled sends' coupons while the sends can still be cancelled, and warns each merchant once per problem
/// (issue #11): a send whose coupon was unpublished, deleted, expires before the hour, was retargeted, or no longer
/// has receives enough for the group would fail at its hour; the merchant learns it, and the last moment to cancel,
/// in time to act.
///
/// Runs on a thread and a connection of its own: it looks at once, then on every `NOTIFY coupond_coupons` (a coupon
/// changed) or `coupond_sends` (a send was scheduled), and hourly; with `engine.listen = false`, every minute.
struct CouponWatch: Sendable {
    let settings: EngineSettings
    let dependencies: EngineDependencies
    let logger: Logger

    /// How long a warning's email may wait for the gateway before it is given back for a later pass.
    static let emailWait = 60.0

    func run(stop: StopSignal) {
        var database = ListeningConnection(
            connect: dependencies.connect,
            channels: settings.listen ? ["coupond_coupons", "coupond_sends"] : [],
            logger: logger,
            failure: "coupon watch: database unavailable; retrying"
        )
        var nextLook = Date.distantPast
        while !stop.isRequested {
            database.run(stop: stop) { connection, fresh in
                // Changes notified while the connection was away were missed: look again.
                if fresh { nextLook = .distantPast }
                if Date() >= nextLook {
                    try look(on: connection, stop: stop)
                    nextLook = Date().addingTimeInterval(settings.listen ? 3600 : 60)
                }
                let timeout = min(1, max(0.01, nextLook.timeIntervalSinceNow))
                if settings.listen {
                    if !(try connection.waitForNotifications(timeout: timeout)).isEmpty { nextLook = .distantPast }
                } else {
                    stop.sleep(timeout)
                }
            }
        }
        database.close()
    }

    /// Marks the warnings due and emails them.
    private func look(on connection: PostgresConnection, stop: StopSignal) throws {
        let store = CouponWarningStore(connection: connection)
        let marked = try store.markDue()
        if marked > 0 {
            logger.notice("coupon watch: sends that would fail at their hour", metadata: ["sends": "\(marked)"])
        }
        while !stop.isRequested {
            let warnings = try store.takeDue(limit: 20)
            if warnings.isEmpty { return }
            for warning in warnings { try email(warning, store: store) }
        }
    }

    private func email(_ warning: CouponWarning, store: CouponWarningStore) throws {
        var logger = logger
        logger[metadataKey: "send.id"] = "\(warning.sendID)"
        guard let gateway = dependencies.email else {
            try store.record(warning, sent: false)
            logger.warning("coupon watch: warning not sent: no email gateway is configured")
            return
        }
        let content = dependencies.warnings.render(
            CouponWarningContext(
                shopName: warning.shopName,
                groupName: warning.groupName,
                couponTitle: warning.couponTitle,
                sendID: warning.sendID,
                scheduledAt: ShopTime.format(warning.scheduledAt, timeZone: warning.timeZone),
                cancelUntil: ShopTime.format(
                    warning.scheduledAt.addingTimeInterval(-2 * 3600),
                    timeZone: warning.timeZone
                ),
                problem: warning.problem,
                hint: warning.hint
            )
        )
        let outcome = Mutex<DeliveryOutcome?>(nil)
        let done = DispatchSemaphore(value: 0)
        let cancellation = CurlCancellation()
        gateway.dispatch(
            OutgoingMessage(
                to: warning.merchantEmail,
                content: .email(subject: content.subject, html: content.html, text: content.text),
                idempotencyKey: "coupond-\(warning.installation)-warning-\(warning.sendID)-\(warning.rule)"
            ),
            cancellation: cancellation
        ) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        if done.wait(timeout: .now() + Self.emailWait) == .timedOut {
            gateway.cancel(cancellation)
            done.wait()
        }
        switch outcome.withLock({ $0 }) {
        case .sent:
            try store.record(warning, sent: true)
            logger.notice("coupon watch: merchant warned", metadata: ["warning.rule": "\(warning.rule)"])
        case .failed(.systemError, _, _, _), nil:
            // Abandoned or the gateway is away: taken up again on a later pass.
            try store.release(warning)
            logger.notice("coupon watch: warning left for later")
        case .unknown(let detail, _):
            // It may have reached the merchant; the warning is not sent again blind.
            try store.record(warning, sent: false)
            logger.warning("coupon watch: warning unconfirmed", metadata: ["detail": "\(detail)"])
        case .failed(let reason, let detail, _, _):
            try store.record(warning, sent: false)
            logger.warning(
                "coupon watch: warning failed",
                metadata: ["reason": "\(reason.rawValue)", "detail": "\(detail)"]
            )
        }
    }
}

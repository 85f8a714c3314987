import Curl
import Delivery
import Foundation
import Logging
import Messages
import Postgres
import Signing
import Storage
import Synchronization

/// The send was handed back after a database error, with what it had recorded.
private struct HandedBack: Error {}

/// Works on one send from claim to notice, on a thread and a database connection of its own.
///
/// A database error that may pass (``PostgresError/isTransient``) abandons the send: its lease runs out and any
/// instance takes it over, continuing from the recorded outcomes. Any other error fails it with `system_error`.
final class SendWorker: Sendable {
    let sendID: Int64
    let engine: Engine
    let stop: StopSignal

    init(sendID: Int64, engine: Engine, stop: StopSignal) {
        self.sendID = sendID
        self.engine = engine
        self.stop = stop
    }

    private var settings: EngineSettings { engine.settings }
    private var dependencies: EngineDependencies { engine.dependencies }
    /// The send's requests, which stop at once when the worker lets the send go for any reason (a lost lease, a
    /// lost database, an error): whoever takes the send over sends what is left, and nothing of ours goes out beside.
    /// A worker runs once, so one token serves its whole run.
    private let cancellation = CurlCancellation()
    private var notice: MerchantNotice {
        MerchantNotice(
            dependencies: dependencies,
            leaseSeconds: settings.leaseSeconds,
            cancellation: cancellation,
            leaseRenewed: { [self] in leaseRenewed(at: $0) }
        )
    }

    /// Returns whether the send was taken (so others may now proceed), `false` when it was not this worker's.
    @discardableResult
    func run() -> Bool {
        var logger = engine.logger
        logger[metadataKey: "send.id"] = "\(sendID)"
        let connection: PostgresConnection
        do {
            connection = try dependencies.connect()
        } catch {
            logger.warning("cannot connect to work on send", metadata: ["error": "\(error)"])
            return false
        }
        defer { connection.close() }
        // On a normal end nothing is left to stop; otherwise the send's requests and retries end here.
        defer {
            dependencies.email?.cancel(cancellation)
            dependencies.sms?.cancel(cancellation)
        }
        // The instance's name claims; after the claim, every write goes through the claim's own lease holder.
        var store = EngineStore(
            connection: connection,
            owner: settings.instanceName,
            leaseSeconds: settings.leaseSeconds
        )
        var claimed: ClaimedSend?
        do {
            let claimedAt = ContinuousClock.now
            guard var send = try store.claim(sendID: sendID) else {
                logger.debug("send not free to take (its group is busy, or another instance holds it)")
                return false
            }
            leaseRenewed(at: claimedAt)
            store = store.holding(send)
            claimed = send
            logger[metadataKey: "group.id"] = "\(send.groupID)"
            logger[metadataKey: "shop.id"] = "\(send.shopID)"
            if send.status == .notStarted || send.status == .sending, send.attempts > settings.maxSendAttempts {
                logger.error(
                    "send failed: taken up too often without finishing (see the earlier errors of this send)",
                    metadata: ["attempts": "\(send.attempts)", "limit": "\(settings.maxSendAttempts)"]
                )
                try store.failWithSystemError(sendID: sendID)
                send.status = .failed
            }
            if send.status == .notStarted {
                let startedAt = ContinuousClock.now
                send.status = try start(send, store: store, logger: logger)
                leaseRenewed(at: startedAt)
            } else if send.status == .sending {
                logger.notice(
                    "resuming send left by another worker",
                    metadata: ["recipients": "\(send.recipientCount ?? 0)"]
                )
            }
            if send.status == .sending {
                guard try deliver(send, store: store, logger: logger) else {
                    try store.releaseLease(sendID: sendID)
                    logger.notice("send handed back unfinished")
                    return true
                }
                send.status = .done
            }
            try notice.send(for: send, store: store, logger: logger)
            try store.releaseLease(sendID: sendID)
            return true
        } catch is HandedBack {
            // The salvage logged it; the send is free for any instance.
        } catch let error as LeaseLost {
            logger.warning("stopped working on send", metadata: ["reason": "\(error)"])
        } catch let error as PostgresError where error.isTransient {
            // A lost connection, a statement timeout, a deadlock, a read-only switchover, a full disk: the send is
            // left under its lease, which runs out, and then any instance goes on from the recorded outcomes.
            logger.warning(
                "database error that may pass; send left to be taken up again when its lease runs out",
                metadata: ["error": "\(error)"]
            )
        } catch {
            logger.error("send failed with a system error", metadata: ["error": "\(error)"])
            guard claimed != nil else { return false }
            do {
                try store.failWithSystemError(sendID: sendID)
                if let send = claimed { try notice.send(for: send, store: store, logger: logger) }
                try store.releaseLease(sendID: sendID)
            } catch {
                logger.error("could not record the system error", metadata: ["error": "\(error)"])
            }
        }
        return claimed != nil
    }

    /// Rule 4's checks and the recipient list; returns the new status.
    private func start(_ send: ClaimedSend, store: EngineStore, logger: Logger) throws -> SendStatus {
        if send.email && dependencies.email == nil { throw EngineError("no email gateway is configured") }
        if send.sms && dependencies.sms == nil { throw EngineError("no SMS gateway is configured") }
        switch try store.start(send) {
        case .failed(let reason):
            logger.notice("send failed at its hour", metadata: ["failure.reason": "\(reason)"])
            return .failed
        case .sending(let recipients):
            logger.notice("send started", metadata: ["recipients": "\(recipients)"])
            return .sending
        }
    }

    /// Sends to every pending recipient, batch by batch. Returns `false` when stopped before the end.
    private func deliver(_ send: ClaimedSend, store: EngineStore, logger: Logger) throws -> Bool {
        let context = try store.context(of: send)
        let budget = try smsBudget(for: send, context: context, store: store)
        let dispatch = BatchDispatch(
            keys: IdempotencyKeys(context, sendID: send.id),
            email: dependencies.email,
            sms: dependencies.sms,
            cancellation: cancellation,
            smsBudget: budget
        )
        let preparation = BatchPreparation(
            sendID: send.id,
            context: context,
            message: dependencies.templates.prepare(
                MessageContext(
                    shopName: context.shopName,
                    customerName: nil,
                    couponTitle: context.couponTitle,
                    couponDescription: context.couponDescription,
                    couponEndsAt: context.couponEndsAt.map { ShopTime.format($0, timeZone: context.timeZone) },
                    emailLink: "",
                    smsLink: "",
                    shopPostalAddress: context.shopPostalAddress ?? ""
                )
            ),
            tokens: dependencies.tokens,
            unsubscribeLinks: dependencies.unsubscribeLinks,
            emailLinks: ClaimLink.Template(
                loginURL: context.loginURL,
                channel: .email,
                campaign: ClaimLink.campaign(couponID: send.couponID)
            ),
            smsLinks: ClaimLink.Template(
                loginURL: context.loginURL,
                channel: .sms,
                campaign: ClaimLink.campaign(couponID: send.couponID)
            ),
            shortLinks: settings.shortLinks,
            threads: settings.preparationThreads,
            emailGateway: dependencies.email,
            smsGateway: dependencies.sms,
            sendStartedBy: send.scheduledAt,
            smsBudget: budget
        )
        let inFlightStore = InFlightStore(connection: store.connection, owner: send.leaseHolder)
        // Messages a crashed or cut-off holder had out may have gone: on a gateway that does not drop repeats they
        // are looked up or settled by policy, never sent again blind.
        let unknown = try inFlightStore.markInFlightUnknown(
            sendID: send.id,
            email: dependencies.email.map { !$0.gateway.isIdempotent } ?? false,
            sms: dependencies.sms.map { !$0.gateway.isIdempotent } ?? false
        )
        if unknown > 0 {
            logger.notice(
                "messages the previous holder had out are unknown; settling them",
                metadata: ["messages": "\(unknown)"]
            )
        }
        if let summary = try SendStore(connection: store.connection).send(id: send.id) {
            engine.progress.begin(
                sendID: send.id,
                total: summary.recipientCount ?? 0,
                sent: summary.sentCount,
                failed: summary.failedCount
            )
        }
        defer { engine.progress.end(sendID: send.id) }
        let feeder = BatchFeeder(
            send: send,
            owner: send.leaseHolder,
            batchSize: settings.batchSize,
            preparation: preparation,
            connect: dependencies.connect
        )
        feeder.start()
        defer { feeder.stop() }
        // Batches overlap: while the oldest waits on slow messages and retries, the next ones are already going out,
        // and the feeder prepares the ones after them.
        var inFlight: [InFlightBatch] = []
        var exhausted = false
        do {
            try deliverBatches(
                send,
                store: store,
                inFlightStore: inFlightStore,
                feeder: feeder,
                dispatch: dispatch,
                preparation: preparation,
                inFlight: &inFlight,
                exhausted: &exhausted,
                logger: logger
            )
        } catch let error as PostgresError where error.isTransient {
            try salvage(inFlight, of: send, after: error, logger: logger)
        }
        if stop.isRequested { return false }
        guard try store.finish(sendID: send.id) else { return false }
        let summary = try SendStore(connection: store.connection).send(id: send.id)
        logger.notice(
            "send done",
            metadata: ["sent": "\(summary?.sentCount ?? 0)", "failed": "\(summary?.failedCount ?? 0)"]
        )
        return true
    }

    /// The send's SMS budget, less what its SMS recorded as sent already cost; `nil` without a budget. Costs are at
    /// the daemon's price per segment, else at the one the send was estimated at.
    private func smsBudget(for send: ClaimedSend, context: SendContext, store: EngineStore) throws -> SMSBudget? {
        guard let limit = context.smsBudget, let price = settings.smsPricePerSegment ?? context.smsBudgetPrice else {
            return nil
        }
        let spent = price * Decimal(try store.sentSMSSegments(sendID: send.id))
        return SMSBudget(limit: limit, pricePerSegment: price, spent: spent)
    }

    /// The send loop: keeps up to `batchesInFlight` batches with the gateways and records each as it completes.
    private func deliverBatches(
        _ send: ClaimedSend,
        store: EngineStore,
        inFlightStore: InFlightStore,
        feeder: BatchFeeder,
        dispatch: BatchDispatch,
        preparation: BatchPreparation,
        inFlight: inout [InFlightBatch],
        exhausted: inout Bool,
        logger: Logger
    ) throws {
        var lastProgressLog = Date()
        while !stop.isRequested || !inFlight.isEmpty {
            fill: while !exhausted, !stop.isRequested, inFlight.count < settings.batchesInFlight {
                // With batches out, recording the oldest is worth more than waiting for the next to be prepared.
                switch feeder.next(wait: inFlight.isEmpty) {
                case nil: break fill
                case .end: exhausted = true
                case .failure(let error): throw error
                case .batch(let prepared):
                    if let last = prepared.last?.customerID {
                        try inFlightStore.noteDispatched(sendID: send.id, through: last)
                    }
                    inFlight.append(dispatch.submit(prepared, message: preparation.message))
                }
            }
            guard let oldest = inFlight.first else { break }
            let outcomes = try collect(oldest, store: store)
            let recordedAt = ContinuousClock.now
            let (sent, failed) = try store.record(sendID: send.id, outcomes: outcomes)
            leaseRenewed(at: recordedAt)
            EngineMetrics.recorded(outcomes, sent: sent, failed: failed)
            inFlight.removeFirst()
            engine.progress.add(
                sendID: send.id,
                sent: sent,
                failed: failed,
                messages: outcomes.reduce(0) { $0 + ($1.emailStatus != nil ? 1 : 0) + ($1.smsStatus != nil ? 1 : 0) }
            )
            if Date().timeIntervalSince(lastProgressLog) >= 5,
                let summary = try SendStore(connection: store.connection).send(id: send.id)
            {
                logger.info(
                    "send progress",
                    metadata: [
                        "sent": "\(summary.sentCount)", "failed": "\(summary.failedCount)",
                        "recipients": "\(summary.recipientCount ?? 0)",
                    ]
                )
                lastProgressLog = Date()
            }
        }
    }

    /// After a database error that may pass, mid-send: stops the send's requests (at once when the session is lost),
    /// and records what came back (unknown included) through a new connection if the send is still ours, then hands
    /// it back so that it is taken up at once instead of when its lease runs out. Throws `error` again in the end
    /// (or what the salvage met).
    private func salvage(
        _ inFlight: [InFlightBatch],
        of send: ClaimedSend,
        after error: PostgresError,
        logger: Logger
    ) throws -> Never {
        func cancelRequests() {
            dependencies.email?.cancel(cancellation)
            dependencies.sms?.cancel(cancellation)
        }
        // Without its session the worker cannot tell whether it still holds the lease: its requests stop at once.
        // With the session alive (read-only, a statement timeout, a deadlock), the requests out may finish and be
        // recorded; whatever is still out at half the lease stops then, well before another holder could take over.
        if error.code == .connectionLost || error.code == .connectionFailed || error.code == .socketFailed {
            cancelRequests()
        }
        let settleBy = Date().addingTimeInterval(Double(settings.leaseSeconds) / 2)
        for batch in inFlight { _ = batch.collector.wait(seconds: max(0, settleBy.timeIntervalSinceNow)) }
        cancelRequests()
        for batch in inFlight { _ = batch.collector.wait(seconds: 30) }
        // Writes are fenced by the lease holder, not its expiry: recording stays safe for as long as nobody else has
        // claimed the send, so the worker keeps trying for five minutes while the server is away or read-only (a
        // switchover, a restart), or until the daemon stops. The same statement failing three times otherwise (a
        // statement timeout, a deadlock) ends it sooner.
        let deadline = Date().addingTimeInterval(300)
        var unrecorded = inFlight[...]
        var recorded = 0
        var delay = 0.2
        var statementFailures = 0
        while Date() < deadline {
            engine.pulse(sendID: sendID)
            do {
                let connection = try dependencies.connect()
                defer { connection.close() }
                let store = EngineStore(
                    connection: connection,
                    owner: settings.instanceName,
                    leaseSeconds: settings.leaseSeconds
                ).holding(send)
                while let batch = unrecorded.first {
                    let outcomes = BatchOutcomes(smsPricePerSegment: settings.smsPricePerSegment).rows(for: batch)
                    try store.record(sendID: send.id, outcomes: outcomes)
                    recorded += outcomes.count
                    unrecorded.removeFirst()
                }
                try store.releaseLease(sendID: send.id)
                logger.notice(
                    "database back: recorded the outcomes held and handed the send back",
                    metadata: ["recipients": "\(recorded)", "error": "\(error)"]
                )
                throw HandedBack()
            } catch let lost as LeaseLost {
                throw lost
            } catch let failure as PostgresError where failure.isTransient {
                // No session, a read-only server or one shutting down or starting: it comes back. A statement timeout
                // or a deadlock that keeps coming is something else.
                let code = failure.sqlState?.code ?? ""
                let serverAway =
                    failure.code != .queryFailed || code == "25006" || code.hasPrefix("08")
                    || code.hasPrefix("57P")
                if !serverAway {
                    statementFailures += 1
                    if statementFailures >= 3 { throw failure }
                }
                if stop.sleep(delay) { throw failure }
                delay = min(delay * 2, 5)
            }
        }
        throw error
    }

    /// Waits for every outcome of a batch, renewing the lease meanwhile, and turns them into rows to record.
    private func collect(_ batch: InFlightBatch, store: EngineStore) throws -> [RecipientOutcome] {
        while !batch.collector.wait(seconds: max(1, settings.leaseSeconds / 3)) {
            let renewedAt = ContinuousClock.now
            try store.renewLease(sendID: sendID)
            leaseRenewed(at: renewedAt)
        }
        return BatchOutcomes(smsPricePerSegment: settings.smsPricePerSegment).rows(for: batch)
    }

    /// After the lease was renewed by a statement sent at `renewedAt`: the send's requests may start until a tenth
    /// of a lease before it runs out in the database (which counts from a moment after `renewedAt`), and the engine
    /// hears that this worker is making progress.
    private func leaseRenewed(at renewedAt: ContinuousClock.Instant) {
        cancellation.hold(until: renewedAt + .milliseconds(Int64(settings.leaseSeconds * 900)))
        engine.pulse(sendID: sendID)
    }
}

import Delivery
import Foundation
import Logging
import Messages
import Postgres
import Signing
import Storage
import Synchronization

/// Works on one send from claim to notice, on a thread and a database connection of its own.
///
/// Any database failure abandons the send: its lease runs out and any instance takes it over, continuing from the
/// recorded outcomes.
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
        // Closing the session also releases the group lock, whatever happened.
        defer { connection.close() }
        let store = EngineStore(
            connection: connection,
            owner: settings.instanceName,
            leaseSeconds: settings.leaseSeconds
        )
        var claimed: ClaimedSend?
        do {
            guard let groupID = try store.groupID(ofSend: sendID) else { return false }
            guard try store.tryGroupLock(groupID: groupID) else {
                logger.debug("group busy with another send; waiting", metadata: ["group.id": "\(groupID)"])
                return false
            }
            guard var send = try store.claim(sendID: sendID) else { return false }
            claimed = send
            logger[metadataKey: "group.id"] = "\(send.groupID)"
            logger[metadataKey: "shop.id"] = "\(send.shopID)"
            if send.status == .notStarted {
                send.status = try start(send, store: store, logger: logger)
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
            try notify(send, store: store, logger: logger)
            try store.releaseLease(sendID: sendID)
            return true
        } catch let error as LeaseLost {
            logger.warning("stopped working on send", metadata: ["reason": "\(error)"])
        } catch let error as PostgresError where error.code == .connectionLost || error.code == .connectionFailed {
            logger.warning("database connection lost; send left for takeover", metadata: ["error": "\(error)"])
        } catch {
            logger.error("send failed with a system error", metadata: ["error": "\(error)"])
            guard claimed != nil else { return false }
            do {
                try store.failWithSystemError(sendID: sendID)
                if let send = claimed { try notify(send, store: store, logger: logger) }
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
        case .sending(let recipients, let failedAtOnce):
            try store.analyzeRecipients()
            logger.notice(
                "send started",
                metadata: ["recipients": "\(recipients)", "unreachable": "\(failedAtOnce)"]
            )
            return .sending
        }
    }

    /// Sends to every pending recipient, batch by batch. Returns `false` when stopped before the end.
    private func deliver(_ send: ClaimedSend, store: EngineStore, logger: Logger) throws -> Bool {
        let context = try store.context(of: send)
        let preparation = BatchPreparation(
            sendID: send.id,
            context: context,
            message: dependencies.templates.prepare(
                MessageContext(
                    shopName: context.shopName,
                    customerName: nil,
                    couponTitle: context.couponTitle,
                    couponDescription: context.couponDescription,
                    couponEndsAt: context.couponEndsAt.map { BatchPreparation.shopTime($0, context.timeZone) },
                    emailLink: "",
                    smsLink: ""
                )
            ),
            tokens: dependencies.tokens,
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
            threads: settings.preparationThreads,
            emailGateway: dependencies.email,
            smsGateway: dependencies.sms
        )
        if let summary = try SendStore(connection: store.connection).send(id: send.id) {
            engine.progress.begin(
                sendID: send.id,
                total: summary.recipientCount ?? 0,
                sent: summary.sentCount,
                failed: summary.failedCount
            )
        }
        defer { engine.progress.end(sendID: send.id) }
        var cursor: Int64 = 0
        var lastProgressLog = Date()
        // Batches overlap: while the oldest waits on slow messages and retries, the next ones are already going out.
        var inFlight: [InFlightBatch] = []
        var exhausted = false
        while !stop.isRequested || !inFlight.isEmpty {
            while !exhausted, !stop.isRequested, inFlight.count < settings.batchesInFlight {
                let batch = try store.pendingRecipients(sendID: send.id, after: cursor, limit: settings.batchSize)
                guard let last = batch.last else {
                    exhausted = true
                    break
                }
                let prepared = preparation.prepare(batch)
                try store.storeTokenHashes(
                    sendID: send.id,
                    customerIDs: prepared.map(\.customerID),
                    hexHashes: prepared.map(\.tokenHashHex)
                )
                inFlight.append(submit(prepared, message: preparation.message))
                cursor = last.customerID
            }
            guard !inFlight.isEmpty else { break }
            let outcomes = try collect(inFlight.removeFirst(), store: store)
            let (sent, failed) = try store.record(sendID: send.id, outcomes: outcomes)
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
        if stop.isRequested { return false }
        guard try store.finish(sendID: send.id) else { return false }
        let summary = try SendStore(connection: store.connection).send(id: send.id)
        logger.notice(
            "send done",
            metadata: ["sent": "\(summary?.sentCount ?? 0)", "failed": "\(summary?.failedCount ?? 0)"]
        )
        return true
    }

    /// A batch whose messages are with the gateways.
    struct InFlightBatch {
        var prepared: [PreparedRecipient]
        var collector: OutcomeCollector
    }

    /// Hands a batch to the gateways without waiting.
    private func submit(_ prepared: [PreparedRecipient], message: PreparedMessage) -> InFlightBatch {
        let collector = OutcomeCollector(count: prepared.count)
        if let email = dependencies.email, let gateway = email.batchGateway {
            submitBatchedEmail(prepared, message: message, gateway: gateway, dispatcher: email, collector: collector)
        }
        for (index, recipient) in prepared.enumerated() {
            if let request = recipient.email, let email = dependencies.email {
                collector.expect()
                email.dispatch(request) { collector.set(index, email: $0) }
            }
            if let request = recipient.sms, let sms = dependencies.sms {
                collector.expect()
                sms.dispatch(request) { collector.set(index, sms: $0) }
            }
        }
        collector.sealed()
        return InFlightBatch(prepared: prepared, collector: collector)
    }

    /// Sends the batch's emails in requests of many recipients each: one content per variant (with or without the
    /// customer's name), every recipient of a request sharing its outcome.
    private func submitBatchedEmail(
        _ prepared: [PreparedRecipient],
        message: PreparedMessage,
        gateway: any BatchEmailGateway,
        dispatcher: GatewayDispatcher,
        collector: OutcomeCollector
    ) {
        for withName in [true, false] {
            let indices = prepared.indices.filter {
                prepared[$0].emailBatch != nil && prepared[$0].emailHasName == withName
            }
            guard !indices.isEmpty else { continue }
            let content = message.emailTemplate(withName: withName)
            for start in stride(from: 0, to: indices.count, by: dispatcher.recipientsPerRequest) {
                let chunk = Array(indices[start..<min(start + dispatcher.recipientsPerRequest, indices.count)])
                let first = prepared[chunk[0]].customerID
                let last = prepared[chunk[chunk.count - 1]].customerID
                let request = gateway.batchRequest(
                    subject: content.subject,
                    html: content.html,
                    text: content.text,
                    recipients: chunk.compactMap { prepared[$0].emailBatch },
                    idempotencyKey: "coupond-\(sendID)-\(first)-\(last)-\(withName ? "n" : "a")-email"
                )
                for _ in chunk { collector.expect() }
                dispatcher.dispatch(request) { outcome in
                    for index in chunk { collector.set(index, email: outcome) }
                }
            }
        }
    }

    /// Waits for every outcome of a batch, renewing the lease meanwhile, and turns them into rows to record.
    private func collect(_ batch: InFlightBatch, store: EngineStore) throws -> [RecipientOutcome] {
        let (prepared, collector) = (batch.prepared, batch.collector)
        while !collector.wait(seconds: max(1, settings.leaseSeconds / 3)) {
            try store.renewLease(sendID: sendID)
        }
        let price = settings.smsPricePerSegment
        return prepared.enumerated().map { index, recipient in
            var outcome = RecipientOutcome(customerID: recipient.customerID)
            let (email, sms) = collector.outcomes(index)
            if let email {
                Self.apply(
                    email,
                    status: &outcome.emailStatus,
                    error: &outcome.emailError,
                    id: &outcome.emailMessageID,
                    attempts: &outcome.emailAttempts
                )
            }
            if let sms {
                Self.apply(
                    sms,
                    status: &outcome.smsStatus,
                    error: &outcome.smsError,
                    id: &outcome.smsMessageID,
                    attempts: &outcome.smsAttempts
                )
                if case .sent(_, let reported, _) = sms {
                    let segments = reported ?? recipient.smsSegments ?? 1
                    outcome.smsSegments = segments
                    outcome.smsCost = price.map { $0 * Decimal(segments) }
                }
            }
            return outcome
        }
    }

    private static func apply(
        _ outcome: DeliveryOutcome,
        status: inout ChannelStatus?,
        error: inout String?,
        id: inout String?,
        attempts: inout Int
    ) {
        switch outcome {
        case .sent(let messageID, _, let count):
            status = .sent
            id = messageID
            attempts = count
        case .failed(.systemError, _, let count):
            // Abandoned at shutdown: the channel stays pending and is sent again, with the same key, later.
            attempts = count
        case .failed(let reason, _, let count):
            status = .failed
            error = reason.rawValue
            attempts = count
        }
    }

    /// Rule 8: tells the merchant how the send ended, with the report link only when some customers failed.
    private func notify(_ send: ClaimedSend, store: EngineStore, logger: Logger) throws {
        guard let summary = try SendStore(connection: store.connection).send(id: send.id),
            summary.status.hasEnded
        else { return }
        guard let email = dependencies.email else {
            try store.recordNotice(sendID: send.id, sent: false, error: "no email gateway is configured")
            logger.warning("merchant notice not sent: no email gateway is configured")
            return
        }
        let context = try store.context(of: send)
        var reportLink: String?
        var reportExpires: String?
        if summary.failedCount > 0, let signer = dependencies.reportLinks, let finished = summary.finishedAt {
            reportLink = signer.link(sendID: send.id, finishedAt: finished)
            reportExpires = BatchPreparation.shopTime(
                finished.addingTimeInterval(ReportLinkSigner.lifetime),
                context.timeZone
            )
        }
        let notice = dependencies.notices.render(
            NoticeContext(
                shopName: context.shopName,
                groupName: context.groupName,
                couponTitle: context.couponTitle,
                statusLabel: summary.statusLabel,
                recipientCount: summary.recipientCount ?? 0,
                sentCount: summary.sentCount,
                failedCount: summary.failedCount,
                failureReason: summary.failureReasonText,
                reportLink: reportLink,
                reportExpires: reportExpires
            )
        )
        let collector = OutcomeCollector(count: 1)
        collector.expect()
        email.dispatch(
            OutgoingMessage(
                to: context.merchantEmail,
                content: .email(subject: notice.subject, html: notice.html, text: notice.text),
                idempotencyKey: "coupond-notice-\(send.id)"
            )
        ) { collector.set(0, email: $0) }
        collector.sealed()
        while !collector.wait(seconds: max(1, settings.leaseSeconds / 3)) {
            try store.renewLease(sendID: send.id)
        }
        switch collector.outcomes(0).email {
        case .sent:
            try store.recordNotice(sendID: send.id, sent: true, error: nil)
            logger.info("merchant notice sent", metadata: ["report.link": "\(reportLink != nil)"])
        case .failed(.systemError, _, _), nil:
            logger.notice("merchant notice left for later")
        case .failed(let reason, let detail, _):
            try store.recordNotice(sendID: send.id, sent: false, error: reason.rawValue)
            logger.warning("merchant notice failed", metadata: ["reason": "\(reason.rawValue)", "detail": "\(detail)"])
        }
    }
}

/// A failure of the engine's own, recorded as `system_error`.
struct EngineError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Gathers the outcomes of a batch from the driver thread and wakes the worker when the last one is in.
final class OutcomeCollector: Sendable {
    private struct State {
        var email: [DeliveryOutcome?]
        var sms: [DeliveryOutcome?]
        var outstanding = 0
        var sealed = false
    }

    private let state: Mutex<State>
    private let done = DispatchSemaphore(value: 0)

    init(count: Int) {
        state = Mutex(State(email: Array(repeating: nil, count: count), sms: Array(repeating: nil, count: count)))
    }

    func expect() { state.withLock { $0.outstanding += 1 } }

    func set(_ index: Int, email outcome: DeliveryOutcome) {
        finish { $0.email[index] = outcome }
    }

    func set(_ index: Int, sms outcome: DeliveryOutcome) {
        finish { $0.sms[index] = outcome }
    }

    /// No more messages will be expected; wakes the waiter at once when all are already in.
    func sealed() {
        let complete = state.withLock { state in
            state.sealed = true
            return state.outstanding == 0
        }
        if complete { done.signal() }
    }

    private func finish(_ update: (inout State) -> Void) {
        let complete = state.withLock { state in
            update(&state)
            state.outstanding -= 1
            return state.sealed && state.outstanding == 0
        }
        if complete { done.signal() }
    }

    /// Waits up to `seconds` for the last outcome; `true` when all are in.
    func wait(seconds: Double) -> Bool {
        done.wait(timeout: .now() + seconds) == .success
    }

    func outcomes(_ index: Int) -> (email: DeliveryOutcome?, sms: DeliveryOutcome?) {
        state.withLock { ($0.email[index], $0.sms[index]) }
    }
}

import Curl
import Delivery
import Foundation
import Logging
import Messages
import Signing
import Storage

/// Rule 8's merchant notice: the email that tells the merchant how a send ended.
struct MerchantNotice {
    let dependencies: EngineDependencies
    /// The lease the worker holds; it is renewed while the notice waits for the gateway.
    let leaseSeconds: Double
    /// The worker's, so that the notice stops with the rest of the send's requests.
    let cancellation: CurlCancellation
    /// Tells the worker that the lease was renewed by a statement sent at the given instant.
    let leaseRenewed: (ContinuousClock.Instant) -> Void

    /// Rule 8: tells the merchant how the send ended, with the report link only when some customers failed.
    func send(for send: ClaimedSend, store: EngineStore, logger: Logger) throws {
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
        let channels = [("Email", summary.emailFunnel), ("SMS", summary.smsFunnel)].compactMap { name, funnel in
            funnel.map { NoticeChannel(name: name, sent: $0.sent, failed: $0.failed) }
        }
        // The report lists every failed channel, so a customer reached by email and not by SMS is in it too.
        if channels.contains(where: { $0.failed > 0 }) || summary.failedCount > 0,
            let signer = dependencies.reportLinks, let finished = summary.finishedAt
        {
            reportLink = signer.link(sendID: send.id, finishedAt: finished, installation: context.installation)
            reportExpires = ShopTime.format(
                finished.addingTimeInterval(ReportLinkSigner.lifetime),
                timeZone: context.timeZone
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
                channels: channels,
                reportLink: reportLink,
                reportExpires: reportExpires
            )
        )
        // A notice an earlier holder handed to the gateway may have gone out: it is settled as any unknown message.
        let mayHaveGone = try store.noteNoticeDispatched(sendID: send.id)
        if mayHaveGone { logger.notice("merchant notice may have gone out before; settling it as unknown") }
        let collector = OutcomeCollector(count: 1)
        collector.expect()
        email.dispatch(
            email.request(
                for: OutgoingMessage(
                    to: context.merchantEmail,
                    content: .email(subject: notice.subject, html: notice.html, text: notice.text),
                    idempotencyKey: IdempotencyKeys(context, sendID: send.id).notice
                )
            ),
            unknown: mayHaveGone,
            cancellation: cancellation
        ) { collector.set(0, email: $0) }
        collector.sealed()
        while !collector.wait(seconds: max(1, leaseSeconds / 3)) {
            let renewedAt = ContinuousClock.now
            try store.renewLease(sendID: send.id)
            leaseRenewed(renewedAt)
        }
        switch collector.outcomes(0).email {
        case .sent:
            try store.recordNotice(sendID: send.id, sent: true, error: nil)
            logger.info("merchant notice sent", metadata: ["report.link": "\(reportLink != nil)"])
        case .failed(.systemError, _, _, _), nil:
            logger.notice("merchant notice left for later")
        case .unknown(let detail, _):
            // It may have gone out: sending it again could be a second notice.
            try store.recordNotice(sendID: send.id, sent: false, error: FailureReason.deliveryUnconfirmed.rawValue)
            logger.warning("merchant notice unconfirmed", metadata: ["detail": "\(detail)"])
        case .failed(let reason, let detail, _, _):
            try store.recordNotice(sendID: send.id, sent: false, error: reason.rawValue)
            logger.warning("merchant notice failed", metadata: ["reason": "\(reason.rawValue)", "detail": "\(detail)"])
        }
    }
}

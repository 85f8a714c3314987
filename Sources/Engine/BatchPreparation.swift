import Curl
import Delivery
import Dispatch
import Foundation
import Messages
import Signing
import Storage

/// A recipient's messages for one batch, ready to go, with the hash of their claim token.
struct PreparedRecipient: Sendable {
    var customerID: Int64
    var tokenHashHex: String
    /// Gateway requests, built here so that the costly encoding runs on the preparation threads.
    var email: HTTPRequest?
    /// With a batch email gateway, the email goes in a request for many recipients instead: this one's values.
    var emailBatch: BatchEmailRecipient?
    /// Which content the batched email uses: the one for customers with a name, or without, in which locale.
    var emailHasName = false
    var emailLocale: String?
    /// Why the email is not sent at all (a malformed address): it fails without a request.
    var emailRefusal: FailureReason?
    var sms: HTTPRequest?
    var smsSegments: Int?
    /// Channels whose message may already have gone out: settled before anything is sent again.
    var emailUnknown = false
    var smsUnknown = false
    /// What finds the SMS in the provider's records, on a gateway that keeps them (``ReconcilingGateway``).
    var smsProbe: DeliveryProbe?
    /// Why the SMS is not sent at all (a malformed number, over 1,600 characters, or over the budget): it fails
    /// without a request.
    var smsRefusal: FailureReason?
    /// What the SMS holds of the send's budget, given back if it certainly does not go out.
    var smsReserved: Decimal?
}

/// Issues claim links and renders messages for a batch on a bounded number of Dispatch threads.
struct BatchPreparation: Sendable {
    let sendID: Int64
    let context: SendContext
    let message: LocalizedMessage
    let tokens: ClaimTokenIssuer
    let unsubscribeLinks: UnsubscribeLinks?
    /// The send's claim links per channel, with `utm_campaign` the same as the preview shows.
    let emailLinks: ClaimLink.Template?
    let smsLinks: ClaimLink.Template?
    /// The channels whose message carries the recipient row's short link (when the row has a code) for the full one.
    let shortLinks: ShortLinks?
    let threads: Int
    let emailGateway: GatewayDispatcher?
    let smsGateway: GatewayDispatcher?
    /// No later than the send's first message: its scheduled hour.
    let sendStartedBy: Date
    /// The send's SMS budget, when it has one.
    let smsBudget: SMSBudget?

    func prepare(_ batch: [PendingRecipient]) -> [PreparedRecipient] {
        guard !batch.isEmpty else { return [] }
        let results = PreparedSlots(count: batch.count)
        let chunks = min(max(1, threads), batch.count)
        let chunkSize = (batch.count + chunks - 1) / chunks
        // concurrentPerform runs at most one iteration per core at a time: the bounded pool of the design.
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = chunk * chunkSize
            for index in start..<min(start + chunkSize, batch.count) {
                results.set(index, prepare(batch[index]))
            }
        }
        var prepared = results.values
        smsBudget?.apply(to: &prepared)
        return prepared
    }

    private func prepare(_ recipient: PendingRecipient) -> PreparedRecipient {
        let token = tokens.token(sendID: sendID, customerID: recipient.customerID)
        let code = shortLinks == nil ? nil : recipient.linkCode.map(ShortLinkCode.encode)
        let shortEmailLink = code.flatMap { shortLinks?.link(.email, code: $0) }
        let shortSMSLink = code.flatMap { shortLinks?.link(.sms, code: $0) }
        let emailLink =
            recipient.emailPending ? shortEmailLink ?? emailLinks?.link(token: token) ?? context.loginURL : ""
        let smsLink = recipient.smsPending ? shortSMSLink ?? smsLinks?.link(token: token) ?? context.loginURL : ""
        let locale = self.message.locale(customer: recipient.locale, shop: context.shopLocale)
        let message = self.message.message(locale)
        let keys = IdempotencyKeys(context, sendID: sendID)
        var prepared = PreparedRecipient(
            customerID: recipient.customerID,
            tokenHashHex: ClaimTokenIssuer.hash(token).hexString
        )
        prepared.emailUnknown = recipient.emailUnknown
        prepared.smsUnknown = recipient.smsUnknown
        let batchEmail = emailGateway?.batchGateway != nil
        let sendsEmail = recipient.emailPending && recipient.email != nil && emailGateway != nil
        let sendsSMS = recipient.smsPending && recipient.mobile != nil && smsGateway != nil
        let unsubscribeLink =
            sendsEmail ? unsubscribeLinks?.link(sendID: sendID, customerID: recipient.customerID) ?? "" : ""
        if sendsEmail, let address = recipient.email, let problem = RecipientAddress.problem(address, email: true) {
            prepared.emailRefusal = problem
        } else if sendsEmail, let address = recipient.email, let gateway = emailGateway {
            if batchEmail {
                // A batched email is filled in by the gateway: only this customer's values go with it.
                prepared.emailHasName = !(recipient.name ?? "").isEmpty
                prepared.emailLocale = locale
                prepared.emailBatch = BatchEmailRecipient(
                    to: address,
                    idempotencyKey: keys.message(customerID: recipient.customerID, channel: "email"),
                    substitutions: Dictionary(
                        uniqueKeysWithValues: message.substitutions(
                            customerName: recipient.name,
                            emailLink: emailLink,
                            smsLink: smsLink,
                            unsubscribeLink: unsubscribeLink
                        ).map { ($0.tag.rawValue, $0.value) }
                    ),
                    unsubscribeURL: unsubscribeLinks == nil ? nil : unsubscribeLink
                )
            } else {
                let content: MessageContent
                if gateway.gateway.takesEscapedEmail {
                    let email = message.escapedEmail(
                        customerName: recipient.name,
                        emailLink: emailLink,
                        smsLink: smsLink,
                        unsubscribeLink: unsubscribeLink
                    )
                    content = .escapedEmail(subject: email.subject, html: email.html, text: email.text)
                } else {
                    let email = message.render(
                        customerName: recipient.name,
                        emailLink: emailLink,
                        smsLink: smsLink,
                        unsubscribeLink: unsubscribeLink
                    )
                    content = .email(subject: email.emailSubject, html: email.emailHTML, text: email.emailText)
                }
                prepared.email = gateway.request(
                    for: OutgoingMessage(
                        to: address,
                        content: content,
                        idempotencyKey: keys.message(customerID: recipient.customerID, channel: "email"),
                        unsubscribeURL: unsubscribeLinks == nil ? nil : unsubscribeLink
                    )
                )
            }
        }
        guard sendsSMS, let number = recipient.mobile, let gateway = smsGateway else { return prepared }
        if let problem = RecipientAddress.problem(number, email: false) {
            prepared.smsRefusal = problem
            return prepared
        }
        let sms = message.sms(
            customerName: recipient.name,
            emailLink: emailLink,
            smsLink: smsLink,
            unsubscribeLink: unsubscribeLink
        )
        if SMSSegments.isTooLong(sms.text) {
            prepared.smsRefusal = .messageTooLong
            return prepared
        }
        prepared.sms = gateway.request(
            for: OutgoingMessage(
                to: number,
                content: .sms(text: sms.text),
                idempotencyKey: keys.message(customerID: recipient.customerID, channel: "sms")
            )
        )
        prepared.smsSegments = sms.segments.count
        if gateway.gateway is any ReconcilingGateway {
            // The token, or the short link's code in its place, is in the text and in no other message; the
            // send's hour is before its first attempt.
            let marker = shortSMSLink == nil ? token : code ?? token
            prepared.smsProbe = DeliveryProbe(to: number, marker: marker, since: sendStartedBy)
        }
        return prepared
    }

}

/// Result slots written by concurrent iterations, each index by exactly one of them.
///
/// `@unchecked Sendable`: every index is written once, by one thread, and read only after `concurrentPerform`
/// returns, which orders the writes before the reads.
/// The slots are raw memory, not a Swift array, so that concurrent writes to distinct indexes are not exclusive
/// accesses to one variable.
private final class PreparedSlots: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<PreparedRecipient?>

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    deinit {
        _ = slots.deinitialize()
        slots.deallocate()
    }

    func set(_ index: Int, _ value: PreparedRecipient) { slots[index] = value }

    var values: [PreparedRecipient] { slots.map { $0! } }
}

import Curl
import Delivery
import Messages

/// A batch whose messages are with the gateways.
struct InFlightBatch {
    var prepared: [PreparedRecipient]
    var collector: OutcomeCollector
}

/// The send stage of a batch: hands its prepared messages to the gateways without waiting, and gathers each
/// recipient's outcomes in an ``OutcomeCollector``.
struct BatchDispatch {
    let keys: IdempotencyKeys
    let email: GatewayDispatcher?
    let sms: GatewayDispatcher?
    /// Stops this send's requests, retries included, when the worker lets the send go.
    let cancellation: CurlCancellation
    /// Takes back the reservation of an SMS that did not go out.
    var smsBudget: SMSBudget? = nil

    /// Hands a batch to the gateways without waiting.
    func submit(_ prepared: [PreparedRecipient], message: LocalizedMessage) -> InFlightBatch {
        let collector = OutcomeCollector(count: prepared.count)
        if let email, let gateway = email.batchGateway {
            submitBatchedEmail(prepared, message: message, gateway: gateway, dispatcher: email, collector: collector)
        }
        for (index, recipient) in prepared.enumerated() {
            if let reason = recipient.emailRefusal {
                collector.expect()
                collector.set(index, email: .failed(reason, detail: Self.refusalDetail(reason), attempts: 0))
            }
            if let request = recipient.email, let email {
                collector.expect()
                email.dispatch(request, unknown: recipient.emailUnknown, cancellation: cancellation) {
                    collector.set(index, email: $0)
                }
            }
            if let reason = recipient.smsRefusal {
                collector.expect()
                collector.set(index, sms: .failed(reason, detail: Self.refusalDetail(reason), attempts: 0))
            }
            if let request = recipient.sms, let sms {
                collector.expect()
                let (budget, reserved) = (smsBudget, recipient.smsReserved)
                sms.dispatch(
                    request,
                    probe: recipient.smsProbe,
                    unknown: recipient.smsUnknown,
                    cancellation: cancellation
                ) { outcome in
                    if let budget, let reserved, SMSBudget.releases(outcome) { budget.release(reserved) }
                    collector.set(index, sms: outcome)
                }
            }
        }
        collector.sealed()
        return InFlightBatch(prepared: prepared, collector: collector)
    }

    static func refusalDetail(_ reason: FailureReason) -> String {
        switch reason {
        case .budgetExhausted: return "the send's SMS budget cannot pay for this SMS"
        case .messageTooLong: return "SMS over \(SMSSegments.maxCharacters) characters"
        case .invalidEmailAddress: return "the email address is not a plain mailbox; nothing was sent"
        case .invalidMobileNumber: return "the mobile number is not E.164; nothing was sent"
        default: return "not sent: \(reason.rawValue)"
        }
    }

    /// Sends the batch's emails in requests of many recipients each: one content per variant (locale, and with or
    /// without the customer's name), every recipient of a request sharing its outcome.
    private func submitBatchedEmail(
        _ prepared: [PreparedRecipient],
        message localized: LocalizedMessage,
        gateway: any BatchEmailGateway,
        dispatcher: GatewayDispatcher,
        collector: OutcomeCollector
    ) {
        let locales = Set(prepared.map(\.emailLocale)).sorted { ($0 ?? "") < ($1 ?? "") }
        for locale in locales {
            for withName in [true, false] {
                submitBatchedEmail(
                    prepared.indices.filter {
                        prepared[$0].emailLocale == locale && prepared[$0].emailHasName == withName
                    },
                    of: prepared,
                    content: localized.message(locale).emailTemplate(withName: withName),
                    variant: (withName ? "n" : "a") + (locale.map { "-" + $0 } ?? ""),
                    gateway: gateway,
                    dispatcher: dispatcher,
                    collector: collector
                )
            }
        }
    }

    /// One variant's recipients (`candidates`, indices into `prepared`), in requests of many each.
    private func submitBatchedEmail(
        _ candidates: [Int],
        of prepared: [PreparedRecipient],
        content: (subject: String, html: String, text: String),
        variant: String,
        gateway: any BatchEmailGateway,
        dispatcher: GatewayDispatcher,
        collector: OutcomeCollector
    ) {
        // A recipient whose email may already have gone out is settled alone, before anything is sent again.
        let indices = candidates.filter { prepared[$0].emailBatch != nil && !prepared[$0].emailUnknown }
        for index in candidates where prepared[index].emailUnknown {
            guard let recipient = prepared[index].emailBatch else { continue }
            collector.expect()
            let request = gateway.batchRequest(
                subject: content.subject,
                html: content.html,
                text: content.text,
                recipients: [recipient],
                idempotencyKey: recipient.idempotencyKey
            )
            dispatcher.dispatch(request, unknown: true, cancellation: cancellation) {
                collector.set(index, email: $0)
            }
        }
        guard !indices.isEmpty else { return }
        for start in stride(from: 0, to: indices.count, by: dispatcher.recipientsPerRequest) {
            let chunk = Array(indices[start..<min(start + dispatcher.recipientsPerRequest, indices.count)])
            let first = prepared[chunk[0]].customerID
            let last = prepared[chunk[chunk.count - 1]].customerID
            @Sendable func request(_ indices: [Int], key: String) -> HTTPRequest {
                gateway.batchRequest(
                    subject: content.subject,
                    html: content.html,
                    text: content.text,
                    recipients: indices.compactMap { prepared[$0].emailBatch },
                    idempotencyKey: key
                )
            }
            for _ in chunk { collector.expect() }
            let key = keys.batch(firstCustomerID: first, lastCustomerID: last, variant: variant)
            dispatcher.dispatch(request(chunk, key: key), cancellation: cancellation) { outcome in
                // A provider refuses a whole request for one bad recipient (SendGrid answers 400 for a malformed
                // address): each recipient then goes alone, so only the bad one fails.
                guard chunk.count > 1, case .failed(.gatewayRefused, _, _, _) = outcome else {
                    for index in chunk { collector.set(index, email: outcome) }
                    return
                }
                for index in chunk {
                    let single = request([index], key: prepared[index].emailBatch?.idempotencyKey ?? key)
                    dispatcher.dispatch(single, cancellation: cancellation) { collector.set(index, email: $0) }
                }
            }
        }
    }
}

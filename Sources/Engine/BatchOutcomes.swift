import Delivery
import Foundation
import Storage

/// The record stage's input: a batch's delivery outcomes as the rows ``EngineStore/record(sendID:outcomes:)`` writes.
struct BatchOutcomes {
    /// The price of one SMS segment, or `nil` when no cost is recorded.
    let smsPricePerSegment: Decimal?

    /// One row per recipient; a channel abandoned at shutdown stays pending, to be sent again later.
    func rows(for batch: InFlightBatch) -> [RecipientOutcome] {
        let (prepared, collector) = (batch.prepared, batch.collector)
        let price = smsPricePerSegment
        return prepared.enumerated().map { index, recipient in
            var outcome = RecipientOutcome(customerID: recipient.customerID)
            outcome.tokenHashHex = recipient.tokenHashHex
            outcome.emailWasUnknown = recipient.emailUnknown
            outcome.smsWasUnknown = recipient.smsUnknown
            let (email, sms) = collector.outcomes(index)
            if let email {
                Self.apply(
                    email,
                    status: &outcome.emailStatus,
                    error: &outcome.emailError,
                    id: &outcome.emailMessageID,
                    attempts: &outcome.emailAttempts,
                    resolution: &outcome.emailResolution
                )
            }
            if let sms {
                Self.apply(
                    sms,
                    status: &outcome.smsStatus,
                    error: &outcome.smsError,
                    id: &outcome.smsMessageID,
                    attempts: &outcome.smsAttempts,
                    resolution: &outcome.smsResolution
                )
                if case .sent(_, let reported, _, _) = sms {
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
        attempts: inout Int,
        resolution: inout UnknownResolution?
    ) {
        switch outcome {
        case .sent(let messageID, _, let count, let settled):
            status = .sent
            id = messageID
            attempts = count
            resolution = settled.flatMap { UnknownResolution(rawValue: $0.rawValue) }
        case .failed(.systemError, _, let count, _):
            // Abandoned before its request could reach the gateway: the channel stays as it was (pending, or
            // unknown) and is taken up again later.
            attempts = count
        case .failed(let reason, _, let count, let settled):
            status = .failed
            error = reason.rawValue
            attempts = count
            resolution = settled.flatMap { UnknownResolution(rawValue: $0.rawValue) }
        case .unknown(_, let count):
            status = .unknown
            attempts = count
        }
    }
}

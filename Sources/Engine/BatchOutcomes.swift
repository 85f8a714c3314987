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
}

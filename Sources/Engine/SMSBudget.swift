import Delivery
import Foundation
import Synchronization

/// A send's SMS budget while it goes out: every SMS reserves its cost before it is handed to the gateway, and one that
/// would take the spending over the budget is not sent (`budget_exhausted`). A message that certainly did not go out
/// gives its reservation back; one that may have gone out keeps it, so the budget holds whatever the gateway did.
final class SMSBudget: Sendable {
    let limit: Decimal
    let pricePerSegment: Decimal
    private let committed: Mutex<Decimal>

    /// - Parameter spent: what the send's SMS recorded as sent already cost (a resumed send).
    init(limit: Decimal, pricePerSegment: Decimal, spent: Decimal) {
        self.limit = limit
        self.pricePerSegment = pricePerSegment
        committed = Mutex(spent)
    }

    /// The cost of an SMS of `segments`.
    func cost(segments: Int) -> Decimal { pricePerSegment * Decimal(segments) }

    /// Reserves `cost`; `false`, reserving nothing, when it would take the spending over the limit.
    func reserve(_ cost: Decimal) -> Bool {
        committed.withLock { committed in
            guard committed + cost <= limit else { return false }
            committed += cost
            return true
        }
    }

    /// Gives back the reservation of an SMS that did not go out.
    func release(_ cost: Decimal) {
        committed.withLock { $0 -= cost }
    }

    /// Whether an SMS that ended with `outcome` certainly did not go out, so that its reservation is free again.
    static func releases(_ outcome: DeliveryOutcome) -> Bool {
        guard case .failed(let reason, _, _, _) = outcome else { return false }
        return reason != .deliveryUnconfirmed
    }

    /// Holds a batch's SMS to the budget, in the batch's order: those it cannot pay for fail with `budget_exhausted`
    /// instead of going out.
    func apply(to batch: inout [PreparedRecipient]) {
        for index in batch.indices where batch[index].sms != nil {
            let cost = cost(segments: batch[index].smsSegments ?? 1)
            if reserve(cost) {
                batch[index].smsReserved = cost
            } else {
                batch[index].sms = nil
                batch[index].smsProbe = nil
                batch[index].smsRefusal = .budgetExhausted
            }
        }
    }
}

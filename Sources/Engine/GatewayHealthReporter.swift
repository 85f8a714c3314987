import Delivery
import Foundation
import Storage

/// Writes what the circuit breakers say of the gateways to `coupond.gateway_health`, for `coupond status`: when it
/// changes, and every minute while a gateway is down so that the row stays fresh.
struct GatewayHealthReporter {
    let instance: String
    let email: GatewayDispatcher?
    let sms: GatewayDispatcher?
    private var written: [String: (snapshot: CircuitBreaker.Snapshot, at: Date)] = [:]

    init(instance: String, email: GatewayDispatcher?, sms: GatewayDispatcher?) {
        self.instance = instance
        self.email = email
        self.sms = sms
    }

    mutating func report(to store: GatewayHealthStore) throws {
        for (channel, dispatcher) in [("email", email), ("sms", sms)] {
            guard let dispatcher else { continue }
            let snapshot = dispatcher.breaker.snapshot
            if let last = written[channel], last.snapshot == snapshot,
                !snapshot.isOpen || Date().timeIntervalSince(last.at) < 60
            {
                continue
            }
            try store.record(
                GatewayHealth(
                    instance: instance,
                    channel: channel,
                    gateway: dispatcher.gateway.name,
                    unavailableSince: snapshot.unavailableSince,
                    lastError: snapshot.lastError
                )
            )
            written[channel] = (snapshot, Date())
        }
    }
}

import Storage

/// The idempotency keys of one send's requests. Each starts with the installation's id, so two installations (staging
/// and production, or two databases behind one gateway account) never send the same key for different messages.
struct IdempotencyKeys: Sendable {
    let installation: String
    let sendID: Int64

    init(installation: String, sendID: Int64) {
        self.installation = installation
        self.sendID = sendID
    }

    init(_ context: SendContext, sendID: Int64) {
        self.init(installation: context.installation, sendID: sendID)
    }

    /// `coupond-<installation>-<send>-<customer>-<channel>`, the same for every attempt of one message.
    func message(customerID: Int64, channel: String) -> String {
        "coupond-\(installation)-\(sendID)-\(customerID)-\(channel)"
    }

    /// A batch email request's own key: its first and last customer and its content variant (`n` or `a`, with or
    /// without the customer's name, then `-<locale>` for a locale's templates).
    func batch(firstCustomerID: Int64, lastCustomerID: Int64, variant: String) -> String {
        "coupond-\(installation)-\(sendID)-\(firstCustomerID)-\(lastCustomerID)-\(variant)-email"
    }

    /// The merchant's notice of the send.
    var notice: String { "coupond-\(installation)-notice-\(sendID)" }
}

import Crypto
public import Foundation

/// Derives and checks the tokens of one-click unsubscribe links (`<public_base_url>/u/<token>`, RFC 8058).
///
/// A token is `<send>.<customer>.<mac>`, where mac is HMAC-SHA256(key, "unsubscribe:<send>:<customer>") cut to 16
/// bytes, in base64url (22 characters, 128 bits). The customer's id says whom to opt out, the send's which shop's
/// email it came from; the MAC, under the claim key with its own label, keeps anyone from opting out a customer
/// whose email they never received. Deriving it means a message sent again carries the same link.
public struct UnsubscribeTokens: Sendable {
    /// Characters of a token's MAC: 16 bytes in base64url.
    public static let macLength = 22

    /// HMAC keyed once, as in ``ClaimTokenIssuer``.
    private nonisolated(unsafe) let keyed: HMAC<SHA256>

    /// What a valid token names.
    public struct Subject: Sendable, Equatable {
        public var sendID: Int64
        public var customerID: Int64
    }

    /// - Parameter key: at least 32 bytes of secret material (the claim key).
    public init(key: Data) {
        precondition(key.count >= 32, "unsubscribe token key must be at least 32 bytes")
        self.keyed = HMAC<SHA256>(key: SymmetricKey(data: key))
    }

    /// The token of one customer's email in one send.
    public func token(sendID: Int64, customerID: Int64) -> String {
        "\(sendID).\(customerID)." + mac(sendID: sendID, customerID: customerID)
    }

    /// The send and customer a token names, or `nil` when it is malformed or its MAC does not match.
    public func verify(_ token: String) -> Subject? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let sendID = Int64(parts[0]), let customerID = Int64(parts[1]), sendID > 0,
            customerID > 0
        else { return nil }
        let expected = mac(sendID: sendID, customerID: customerID)
        // Compare in constant time so that a MAC cannot be found byte by byte.
        guard ConstantTime.equal(Array(expected.utf8), Array(parts[2].utf8)) else { return nil }
        return Subject(sendID: sendID, customerID: customerID)
    }

    private func mac(sendID: Int64, customerID: Int64) -> String {
        var message = "unsubscribe:\(sendID):\(customerID)"
        var authenticator = keyed
        message.withUTF8 { authenticator.update(data: UnsafeRawBufferPointer($0)) }
        return Data(Data(authenticator.finalize()).prefix(16)).base64URLEncoded()
    }
}

/// The customers' unsubscribe links of one installation: `<public_base_url>/u/<token>`.
public struct UnsubscribeLinks: Sendable {
    public let tokens: UnsubscribeTokens
    public let baseURL: String

    /// - Parameter baseURL: the public address the HTTP endpoints are served from; a trailing `/` is dropped.
    public init(tokens: UnsubscribeTokens, baseURL: String) {
        self.tokens = tokens
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
    }

    /// One customer's link for an email of one send.
    public func link(sendID: Int64, customerID: Int64) -> String {
        "\(baseURL)/u/\(tokens.token(sendID: sendID, customerID: customerID))"
    }

    /// A link of the real shape and length with `x` for its MAC, for previews, which hold no key.
    public static func sample(baseURL: String, sendID: Int64, customerID: Int64) -> String {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        return "\(base)/u/\(sendID).\(customerID).\(String(repeating: "x", count: UnsubscribeTokens.macLength))"
    }
}

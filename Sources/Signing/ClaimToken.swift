import Crypto
public import Foundation

/// Derives customers' claim tokens and the hashes stored in their place.
///
/// A token is `<send>.<customer>.<mac>`, where mac is HMAC-SHA256(key, "claim:<send>:<customer>") in base64url
/// without padding (43 characters, 256 bits). The ids let `coupond.claim_coupon` find the recipient's row by its
/// primary key; the MAC makes the token impossible to forge without the key. Deriving it rather than drawing it at
/// random means a message retried after a crash carries the same link, and the token itself never needs storing:
/// only SHA-256 of its text goes to the database (`send_recipients.token_hash`), which is what the claim compares.
public struct ClaimTokenIssuer: Sendable {
    /// HMAC keyed once: setting the key up (hashing both padded key blocks) was half the cost of every token.
    /// Never mutated; each token works on its own copy, and the hashers underneath copy on write.
    private nonisolated(unsafe) let keyed: HMAC<SHA256>

    /// - Parameter key: at least 32 bytes of secret material.
    public init(key: Data) {
        precondition(key.count >= 32, "claim token key must be at least 32 bytes")
        self.keyed = HMAC<SHA256>(key: SymmetricKey(data: key))
    }

    /// The token of one customer in one send.
    public func token(sendID: Int64, customerID: Int64) -> String {
        var message = "claim:\(sendID):\(customerID)"
        var authenticator = keyed
        message.withUTF8 { authenticator.update(data: UnsafeRawBufferPointer($0)) }
        return "\(sendID).\(customerID)." + Data(authenticator.finalize()).base64URLEncoded()
    }

    /// SHA-256 of the token's UTF-8 text, as stored in `send_recipients.token_hash`.
    public static func hash(_ token: String) -> Data {
        Data(SHA256.hash(data: Data(token.utf8)))
    }
}

extension Data {
    /// Base64url without padding (RFC 4648 §5), safe in URLs without escaping.
    public func base64URLEncoded() -> String {
        var bytes = Array(base64EncodedString().utf8)
        // Per-byte mapping: this runs for every customer of a send, where string replacement showed in profiles.
        for index in bytes.indices {
            switch bytes[index] {
            case UInt8(ascii: "+"): bytes[index] = UInt8(ascii: "-")
            case UInt8(ascii: "/"): bytes[index] = UInt8(ascii: "_")
            default: break
            }
        }
        while bytes.last == UInt8(ascii: "=") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Lower-case hexadecimal.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(count * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

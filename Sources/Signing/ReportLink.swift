import Crypto
public import Foundation

/// Signed, expiring links to a send's failure report (rule 9).
///
/// A link is `<base>/reports/<send>?expires=<unix seconds>&signature=<hex HMAC-SHA256(key, "report:<installation>:<send>:<expires>")>`:
/// the installation's id (`coupond.installation`) in the signed text keeps another installation's link for the same
/// send number from opening this one's report, even with a shared key.
/// Anyone holding the link can download the report until it expires; nobody can make or extend one without the key.
public struct ReportLinkSigner: Sendable {
    /// How long a report stays downloadable after the send finished.
    public static let lifetime: TimeInterval = 7 * 24 * 3600

    /// Why a link was refused.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case malformed
        case badSignature
        case expired(Date)

        public var description: String {
            switch self {
            case .malformed: return "this report link is not valid"
            case .badSignature: return "this report link is not valid: its signature does not match"
            case .expired(let date):
                return "this report link has expired (reports can be downloaded for 7 days; it expired \(date))"
            }
        }
    }

    private let keyData: Data
    private let baseURL: String

    /// - Parameters:
    ///   - key: at least 32 bytes of secret material.
    ///   - baseURL: the public address the report endpoint is served from, for example `https://coupond.example`.
    public init(key: Data, baseURL: String) {
        precondition(key.count >= 32, "report signing key must be at least 32 bytes")
        self.keyData = key
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
    }

    /// The link for a send that finished at `finishedAt`.
    public func link(sendID: Int64, finishedAt: Date, installation: String) -> String {
        let expires = Int64((finishedAt.addingTimeInterval(Self.lifetime)).timeIntervalSince1970)
        return
            "\(baseURL)/reports/\(sendID)?expires=\(expires)&signature=\(signature(installation, sendID, expires))"
    }

    /// Checks a link and returns its send id.
    ///
    /// - Throws: ``Refusal``: `.expired` once its time has passed, `.badSignature` when it was altered.
    public func verify(_ link: String, installation: String, now: Date = Date()) throws -> Int64 {
        guard let components = URLComponents(string: link),
            let sendText = components.path.split(separator: "/").last, let sendID = Int64(sendText),
            components.path.hasSuffix("/reports/\(sendID)"),
            let expiresText = components.queryItems?.first(where: { $0.name == "expires" })?.value,
            let expires = Int64(expiresText),
            let signature = components.queryItems?.first(where: { $0.name == "signature" })?.value
        else { throw Refusal.malformed }
        let expected = self.signature(installation, sendID, expires)
        // Compare in constant time so the signature cannot be found byte by byte.
        guard ConstantTime.equal(Array(expected.utf8), Array(signature.utf8)) else { throw Refusal.badSignature }
        let expiry = Date(timeIntervalSince1970: TimeInterval(expires))
        guard now < expiry else { throw Refusal.expired(expiry) }
        return sendID
    }

    private func signature(_ installation: String, _ sendID: Int64, _ expires: Int64) -> String {
        Data(
            HMAC<SHA256>.authenticationCode(
                for: Data("report:\(installation):\(sendID):\(expires)".utf8),
                using: SymmetricKey(data: keyData)
            )
        ).hexString
    }

}

/// Comparison of secrets that takes as long wherever they differ, so that a secret cannot be found byte by byte.
public enum ConstantTime {
    /// Whether `a` and `b` are the same bytes; only their lengths leak.
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}

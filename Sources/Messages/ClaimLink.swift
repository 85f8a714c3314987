import Foundation

/// The channel a message goes out on; it is also the link's `utm_medium`.
public enum Channel: String, Sendable, Codable, CaseIterable {
    case email
    case sms
}

/// Builds a customer's claim link: the shop's login URL with the claim token and UTM parameters.
public enum ClaimLink {
    /// Query parameter that carries the claim token.
    public static let tokenParameter = "coupon_claim_token"

    /// The `utm_campaign` of a coupon's links, the same in previews and in sends.
    public static func campaign(couponID: Int64) -> String { "coupon-\(couponID)" }

    /// - Parameters:
    ///   - loginURL: the shop's login page; its own query parameters are kept.
    ///   - token: the customer's claim token.
    ///   - channel: becomes `utm_medium`.
    ///   - campaign: becomes `utm_campaign`, for example `coupon-send-42`.
    /// - Returns: the link, or `nil` when `loginURL` is not an absolute URL.
    public static func make(loginURL: String, token: String, channel: Channel, campaign: String) -> String? {
        guard var components = URLComponents(string: loginURL), components.scheme != nil, components.host != nil
        else { return nil }
        var items = (components.queryItems ?? []).filter {
            ![tokenParameter, "utm_source", "utm_medium", "utm_campaign"].contains($0.name)
        }
        items.append(URLQueryItem(name: tokenParameter, value: token))
        items.append(URLQueryItem(name: "utm_source", value: "coupond"))
        items.append(URLQueryItem(name: "utm_medium", value: channel.rawValue))
        items.append(URLQueryItem(name: "utm_campaign", value: campaign))
        components.queryItems = items
        return components.url?.absoluteString
    }

    /// A send's links for one channel, built once with the token left out, so that a customer's link is two
    /// concatenations instead of parsing and rebuilding the login URL (which showed in profiles of large sends).
    public struct Template: Sendable {
        private let loginURL: String
        private let channel: Channel
        private let campaign: String
        private let prefix: String
        private let suffix: String

        /// `nil` when `loginURL` is not an absolute URL, as with ``ClaimLink/make(loginURL:token:channel:campaign:)``.
        public init?(loginURL: String, channel: Channel, campaign: String) {
            // Letters, digits, '-' and '_' pass through URL query encoding unchanged, so the marker can be found again.
            let marker = "CoupondTokenMarker9f3a"
            guard let link = ClaimLink.make(loginURL: loginURL, token: marker, channel: channel, campaign: campaign),
                let range = link.range(of: "=" + marker)
            else { return nil }
            self.loginURL = loginURL
            self.channel = channel
            self.campaign = campaign
            prefix = String(link[..<range.lowerBound]) + "="
            suffix = String(link[range.upperBound...])
        }

        /// What comes before and after a URL-safe token in every link of this template.
        public var around: (prefix: String, suffix: String) { (prefix, suffix) }

        /// The link for `token`; the same text ``ClaimLink/make(loginURL:token:channel:campaign:)`` gives.
        public func link(token: String) -> String {
            // Claim tokens (`<send>.<customer>.<mac>`) are all unreserved characters (RFC 3986), which query encoding
            // leaves as they are; anything else takes the slow path through URLComponents.
            let urlSafe = token.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                    UInt8(ascii: "~"):
                    return true
                default: return false
                }
            }
            guard urlSafe else {
                return ClaimLink.make(loginURL: loginURL, token: token, channel: channel, campaign: campaign)
                    ?? loginURL
            }
            return prefix + token + suffix
        }
    }
}

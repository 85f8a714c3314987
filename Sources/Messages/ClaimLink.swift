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
}

/// Which channels carry a short link instead of the full claim link, and where the HTTP listener serves them:
/// `<public_base_url>/c/<code>` in an SMS, `<public_base_url>/e/<code>` in an email. One code serves both channels;
/// the path says which channel's link was followed.
public struct ShortLinks: Sendable, Equatable {
    /// The public base URL without a trailing slash, for example `https://coupons.example`.
    public var base: String
    public var email: Bool
    public var sms: Bool

    /// `nil` when no channel uses short links (or there is no public base URL to serve them from).
    public init?(publicBaseURL: String?, email: Bool, sms: Bool) {
        guard var base = publicBaseURL, email || sms else { return nil }
        while base.hasSuffix("/") { base.removeLast() }
        self.base = base
        self.email = email
        self.sms = sms
    }

    /// The path segment of a channel's short links.
    public static func pathSegment(_ channel: Channel) -> String {
        channel == .email ? "e" : "c"
    }

    /// Whether `channel`'s messages carry a short link.
    public func uses(_ channel: Channel) -> Bool {
        channel == .email ? email : sms
    }

    /// `channel`'s short link for `code` (its 18 base62 characters), or `nil` when the channel carries the full link.
    public func link(_ channel: Channel, code: String) -> String? {
        uses(channel) ? base + "/" + Self.pathSegment(channel) + "/" + code : nil
    }
}

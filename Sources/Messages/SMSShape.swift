public import Foundation

/// A send's SMS as its templates render it, with markers where each customer's name and link go, and the price of a
/// segment: what `coupond.sms_estimate` renders for every member to count their own segments, and what a send's
/// `sms_shape` holds.
///
/// JSON: `{"price_per_segment": "0.05", "locales": {"": {"named": "...", "anonymous": "..."}, "ar": {...}},
/// "link": {"short": "<base>/c/", "code_length": 18}}` or, with full claim links,
/// `"link": {"prefix": "<login URL>?coupon_claim_token=", "suffix": "&utm_source=...", "mac_length": 43}` (the
/// token between is `<send>.<customer>.<mac>`). The key `""` is the default templates.
public struct SMSShape: Sendable, Equatable, Encodable {
    public static let nameMarker = "\u{E000}N\u{E001}"
    public static let linkMarker = "\u{E000}S\u{E001}"

    public struct Texts: Sendable, Equatable, Encodable {
        /// For a customer with a name, and for one without (`{{#customer_name}}` sections differ).
        public var named: String
        public var anonymous: String
    }

    /// How long each customer's link is.
    public enum Link: Sendable, Equatable {
        /// `<base>/c/<code>`, the code ``ShortLinkCode/length`` characters.
        case short(prefix: String)
        /// The full claim link around a `<send>.<customer>.<mac>` token.
        case full(prefix: String, suffix: String)
    }

    public var pricePerSegment: Decimal?
    public var locales: [String: Texts]
    public var link: Link

    /// The shape of `message`'s SMS for links of `link`'s kind.
    public init(message: LocalizedMessage, link: Link, pricePerSegment: Decimal?) {
        func texts(_ prepared: PreparedMessage) -> Texts {
            Texts(named: prepared.smsTemplate(withName: true), anonymous: prepared.smsTemplate(withName: false))
        }
        var locales = ["": texts(message.standard)]
        for (locale, prepared) in message.byLocale { locales[locale] = texts(prepared) }
        self.locales = locales
        self.link = link
        self.pricePerSegment = pricePerSegment
    }

    /// The link kind a send's SMS carries: the short link when SMS short links are on, else the full claim link.
    public static func link(shortLinks: ShortLinks?, claimLinks: ClaimLink.Template?) -> Link? {
        if let prefix = shortLinks?.link(.sms, code: "") { return .short(prefix: prefix) }
        return claimLinks.map { .full(prefix: $0.around.prefix, suffix: $0.around.suffix) }
    }

    enum CodingKeys: String, CodingKey {
        case pricePerSegment = "price_per_segment", locales, link
    }

    private struct LinkJSON: Encodable {
        var short: String?
        var codeLength: Int?
        var prefix: String?
        var suffix: String?
        var macLength: Int?

        enum CodingKeys: String, CodingKey {
            case short, prefix, suffix
            case codeLength = "code_length", macLength = "mac_length"
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(pricePerSegment.map { "\($0)" }, forKey: .pricePerSegment)
        try container.encode(locales, forKey: .locales)
        switch link {
        case .short(let prefix):
            try container.encode(LinkJSON(short: prefix, codeLength: ShortLinkCode.length), forKey: .link)
        case .full(let prefix, let suffix):
            // A claim token's MAC: 32 bytes in base64url without padding.
            try container.encode(LinkJSON(prefix: prefix, suffix: suffix, macLength: 43), forKey: .link)
        }
    }

    /// The JSON text, keys sorted, for `sends.sms_shape`.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

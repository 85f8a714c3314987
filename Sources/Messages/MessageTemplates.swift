public import Foundation
internal import Mustache

/// What one customer receives, rendered from the operator's templates.
public struct RenderedMessage: Sendable, Equatable, Codable {
    public var emailSubject: String
    public var emailHTML: String
    public var emailText: String
    public var smsText: String
    public var smsSegments: SMSSegments
}

/// Values a template can use.
public struct MessageContext: Sendable {
    public var shopName: String
    public var customerName: String?
    public var couponTitle: String
    public var couponDescription: String
    public var couponEndsAt: String?
    public var emailLink: String
    public var smsLink: String
    /// The shop's postal address, for the email's footer (CAN-SPAM asks for the sender's).
    public var shopPostalAddress: String
    /// The customer's one-click unsubscribe link (`<public_base_url>/u/<token>`), also in the email's headers.
    public var unsubscribeLink: String

    public init(
        shopName: String,
        customerName: String?,
        couponTitle: String,
        couponDescription: String,
        couponEndsAt: String?,
        emailLink: String,
        smsLink: String,
        shopPostalAddress: String = "",
        unsubscribeLink: String = ""
    ) {
        self.shopName = shopName
        self.customerName = customerName
        self.couponTitle = couponTitle
        self.couponDescription = couponDescription
        self.couponEndsAt = couponEndsAt
        self.emailLink = emailLink
        self.smsLink = smsLink
        self.shopPostalAddress = shopPostalAddress
        self.unsubscribeLink = unsubscribeLink
    }

    var values: [String: Any] {
        var values: [String: Any] = [
            "shop_name": shopName,
            "coupon_title": couponTitle,
            "coupon_description": couponDescription,
            "email_link": emailLink,
            "sms_link": smsLink,
            "shop_postal_address": shopPostalAddress,
            "unsubscribe_link": unsubscribeLink,
        ]
        if let customerName, !customerName.isEmpty { values["customer_name"] = customerName }
        if let couponEndsAt { values["coupon_ends_at"] = couponEndsAt }
        return values
    }
}

/// A failure to load or parse a template, naming the file.
public struct TemplateError: Error, CustomStringConvertible {
    public var file: String
    public var reason: String
    public var description: String { "template \(file): \(reason)" }
}

/// The four Mustache templates of a message, loaded from a folder an operator can edit.
///
/// Besides the ``MessageContext`` values, a template can use `{{lang}}` and `{{dir}}`: the language its folder is
/// written in and its direction (`rtl` for Arabic, Hebrew, Persian, Urdu and the like, else `ltr`), for
/// `<html lang dir>`.
///
/// | file | renders | escaping |
/// |---|---|---|
/// | `email_subject.mustache` | the subject line | none (plain text) |
/// | `email.html.mustache` | the HTML part | `{{ }}` is HTML-escaped |
/// | `email.txt.mustache` | the text part | none (plain text) |
/// | `sms.mustache` | the SMS body | none (plain text) |
public struct MessageTemplates: Sendable {
    public static let fileNames = [
        "email_subject.mustache", "email.html.mustache", "email.txt.mustache", "sms.mustache",
    ]

    private let subject: MustacheTemplate
    private let html: MustacheTemplate
    private let text: MustacheTemplate
    private let sms: MustacheTemplate
    /// The language the templates are written in, as `lang` takes it (`en`, `fr-ca`).
    public let language: String

    /// Loads and parses the templates of `directory`.
    ///
    /// - Parameter language: what the templates are written in; `{{lang}}` and `{{dir}}` follow it.
    /// - Throws: ``TemplateError`` naming a missing or unparsable file.
    public init(directory: URL, language: String = "en") throws {
        self.language = language
        func load(_ name: String, plainText: Bool) throws -> MustacheTemplate {
            try TemplateLoader.load(directory, name, plainText: plainText)
        }
        subject = try load("email_subject.mustache", plainText: true)
        html = try load("email.html.mustache", plainText: false)
        text = try load("email.txt.mustache", plainText: true)
        sms = try load("sms.mustache", plainText: true)
    }

    /// Renders all parts for one customer.
    public func render(_ context: MessageContext) -> RenderedMessage {
        let raw = renderRaw(context)
        let smsText = Self.trimmed(raw.sms)
        return RenderedMessage(
            emailSubject: Self.trimmed(raw.subject),
            emailHTML: raw.html,
            emailText: raw.text,
            smsText: smsText,
            smsSegments: SMSSegments(text: smsText)
        )
    }

    /// Renders the templates once for a whole send; the result fills in each customer's name and links quickly.
    ///
    /// `context.customerName` and the links are ignored: they are the per-customer values.
    public func prepare(_ context: MessageContext) -> PreparedMessage {
        PreparedMessage(templates: self, context: context)
    }

    func renderRaw(_ context: MessageContext) -> (subject: String, html: String, text: String, sms: String) {
        var values = context.values
        values["lang"] = language
        values["dir"] = Self.direction(of: language)
        return (subject.render(values), html.render(values), text.render(values), sms.render(values))
    }

    /// Languages written right to left, by their ISO 639 code.
    static let rightToLeft: Set<String> = [
        "ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ps", "sd", "ug", "ur", "yi",
    ]

    /// `rtl` for a language written right to left (`ar`, `ar-EG`, `fa`), else `ltr`.
    public static func direction(of language: String) -> String {
        let code = language.lowercased().split(whereSeparator: { $0 == "-" || $0 == "_" }).first.map(String.init) ?? ""
        return rightToLeft.contains(code) ? "rtl" : "ltr"
    }

    /// The text without leading and trailing white space and newlines: the scalars with Unicode's White_Space
    /// property, the same set as Foundation's `whitespacesAndNewlines`, without bridging to `NSString` for every
    /// message.
    static func trimmed(_ text: String) -> String {
        let scalars = text.unicodeScalars
        var start = scalars.startIndex
        var end = scalars.endIndex
        while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
        while end > start, scalars[scalars.index(before: end)].properties.isWhitespace {
            end = scalars.index(before: end)
        }
        if start == scalars.startIndex && end == scalars.endIndex { return text }
        return String(scalars[start..<end])
    }
}

import Foundation

/// A send's message templates rendered once, with markers where each customer's name and links go.
///
/// Rendering four Mustache templates per customer dominated the daemon's CPU time; with the shop and coupon fixed for
/// a whole send, only four values change per customer, so they are spliced into pre-rendered text instead. The
/// result is the same text that ``MessageTemplates/render(_:)`` gives (tests hold the two to it).
public struct PreparedMessage: Sendable {
    enum Slot: Sendable {
        case name, emailLink, smsLink, unsubscribeLink
    }

    enum Piece: Sendable {
        case text(String)
        case slot(Slot)
    }

    /// The four parts, as pieces; index 1 is HTML and gets escaped values.
    struct Variant: Sendable {
        var parts: [[Piece]]
    }

    private let withName: Variant
    private let withoutName: Variant

    static let markers: [(String, Slot)] = [
        ("\u{E000}N\u{E001}", .name), ("\u{E000}E\u{E001}", .emailLink), ("\u{E000}S\u{E001}", .smsLink),
        ("\u{E000}U\u{E001}", .unsubscribeLink),
    ]

    init(templates: MessageTemplates, context: MessageContext) {
        func variant(_ name: String?) -> Variant {
            var marked = context
            marked.customerName = name
            marked.emailLink = Self.markers[1].0
            marked.smsLink = Self.markers[2].0
            marked.unsubscribeLink = Self.markers[3].0
            let rendered = templates.renderRaw(marked)
            return Variant(parts: [rendered.subject, rendered.html, rendered.text, rendered.sms].map(Self.pieces))
        }
        // Sections like {{#customer_name}} differ with and without a name, so both are rendered.
        withName = variant(Self.markers[0].0)
        withoutName = variant(nil)
    }

    /// The message for one customer.
    public func render(
        customerName: String?,
        emailLink: String,
        smsLink: String,
        unsubscribeLink: String = ""
    ) -> RenderedMessage {
        let name = customerName.flatMap { $0.isEmpty ? nil : $0 }
        let variant = name == nil ? withoutName : withName
        func fill(_ pieces: [Piece], html: Bool) -> String {
            var text = ""
            for piece in pieces {
                switch piece {
                case .text(let literal): text += literal
                case .slot(let slot):
                    let value: String
                    switch slot {
                    case .name: value = name ?? ""
                    case .emailLink: value = emailLink
                    case .smsLink: value = smsLink
                    case .unsubscribeLink: value = unsubscribeLink
                    }
                    text += html ? Self.escapeHTML(value) : value
                }
            }
            return text
        }
        let smsText = MessageTemplates.trimmed(fill(variant.parts[3], html: false))
        return RenderedMessage(
            emailSubject: MessageTemplates.trimmed(fill(variant.parts[0], html: false)),
            emailHTML: fill(variant.parts[1], html: true),
            emailText: fill(variant.parts[2], html: false),
            smsText: smsText,
            smsSegments: SMSSegments(text: smsText)
        )
    }

    /// The placeholders a gateway that fills in each recipient's values itself (SendGrid's substitutions) finds in
    /// ``emailTemplate(withName:)``; the HTML part has its own, whose values are HTML-escaped.
    public enum SubstitutionTag: String, Sendable, CaseIterable {
        case name = "-coupond_name-"
        case nameHTML = "-coupond_name_html-"
        case emailLink = "-coupond_email_link-"
        case emailLinkHTML = "-coupond_email_link_html-"
        case smsLink = "-coupond_sms_link-"
        case smsLinkHTML = "-coupond_sms_link_html-"
        case unsubscribeLink = "-coupond_unsubscribe_link-"
        case unsubscribeLinkHTML = "-coupond_unsubscribe_link_html-"
    }

    /// The email with a placeholder where each recipient's values go, for a gateway that sends one content to many
    /// recipients. A recipient's values are ``substitutions(customerName:emailLink:smsLink:)``; replacing the tags
    /// with them gives the same email as ``render(customerName:emailLink:smsLink:)``.
    ///
    /// - Parameter withName: the variant for customers with a name (sections such as `{{#customer_name}}` differ).
    public func emailTemplate(withName: Bool) -> (subject: String, html: String, text: String) {
        let variant = withName ? self.withName : withoutName
        func fill(_ pieces: [Piece], html: Bool) -> String {
            pieces.map { piece in
                switch piece {
                case .text(let literal): return literal
                case .slot(.name): return (html ? SubstitutionTag.nameHTML : .name).rawValue
                case .slot(.emailLink): return (html ? SubstitutionTag.emailLinkHTML : .emailLink).rawValue
                case .slot(.smsLink): return (html ? SubstitutionTag.smsLinkHTML : .smsLink).rawValue
                case .slot(.unsubscribeLink):
                    return (html ? SubstitutionTag.unsubscribeLinkHTML : .unsubscribeLink).rawValue
                }
            }.joined()
        }
        return (
            MessageTemplates.trimmed(fill(variant.parts[0], html: false)),
            fill(variant.parts[1], html: true),
            fill(variant.parts[2], html: false)
        )
    }

    /// The SMS with ``SMSShape/nameMarker`` and ``SMSShape/linkMarker`` where each customer's name and SMS link go,
    /// before the trimming every rendered SMS gets.
    public func smsTemplate(withName: Bool) -> String {
        (withName ? self.withName : withoutName).parts[3].map { piece in
            switch piece {
            case .text(let literal): return literal
            case .slot(.name): return SMSShape.nameMarker
            case .slot(.smsLink): return SMSShape.linkMarker
            case .slot(.emailLink), .slot(.unsubscribeLink): return ""
            }
        }.joined()
    }

    /// One recipient's values for the tags of ``emailTemplate(withName:)``.
    public func substitutions(
        customerName: String?,
        emailLink: String,
        smsLink: String,
        unsubscribeLink: String = ""
    ) -> [(tag: SubstitutionTag, value: String)] {
        let name = customerName.flatMap { $0.isEmpty ? nil : $0 } ?? ""
        return [
            (.name, name), (.nameHTML, Self.escapeHTML(name)), (.emailLink, emailLink),
            (.emailLinkHTML, Self.escapeHTML(emailLink)), (.smsLink, smsLink), (.smsLinkHTML, Self.escapeHTML(smsLink)),
            (.unsubscribeLink, unsubscribeLink), (.unsubscribeLinkHTML, Self.escapeHTML(unsubscribeLink)),
        ]
    }

    static func pieces(_ rendered: String) -> [Piece] {
        var pieces: [Piece] = []
        var rest = Substring(rendered)
        while let (range, slot) = markers.compactMap({ marker, slot in rest.range(of: marker).map { ($0, slot) } })
            .min(by: { $0.0.lowerBound < $1.0.lowerBound })
        {
            if range.lowerBound > rest.startIndex { pieces.append(.text(String(rest[..<range.lowerBound]))) }
            pieces.append(.slot(slot))
            rest = rest[range.upperBound...]
        }
        if !rest.isEmpty { pieces.append(.text(String(rest))) }
        return pieces
    }

    /// The escaping Mustache applies to `{{value}}` in HTML. Every claim link goes through it, so runs of bytes that
    /// need no escape are copied whole rather than appended one at a time.
    public static func escapeHTML(_ text: String) -> String {
        var text = text
        return text.withUTF8 { utf8 in
            var escaped: [UInt8] = []
            escaped.reserveCapacity(utf8.count + 32)
            var start = 0
            for index in 0..<utf8.count {
                let entity: StaticString
                switch utf8[index] {
                case UInt8(ascii: "&"): entity = "&amp;"
                case UInt8(ascii: "<"): entity = "&lt;"
                case UInt8(ascii: ">"): entity = "&gt;"
                case UInt8(ascii: "\""): entity = "&quot;"
                case UInt8(ascii: "'"): entity = "&#39;"
                default: continue
                }
                escaped.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                entity.withUTF8Buffer { escaped.append(contentsOf: $0) }
                start = index + 1
            }
            escaped.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
            return String(decoding: escaped, as: UTF8.self)
        }
    }
}

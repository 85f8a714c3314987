import Foundation
import WireJSON

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
        /// The HTML and text parts with their text escaped for a JSON string once (``JSONBytes/escaped(_:)``).
        var escapedHTML: [EscapedPiece]
        var escapedText: [EscapedPiece]

        init(parts: [[Piece]]) {
            self.parts = parts
            func escape(_ pieces: [Piece]) -> [EscapedPiece] {
                pieces.map { piece in
                    switch piece {
                    case .text(let literal): return .text(JSONBytes.escaped(literal))
                    case .slot(let slot): return .slot(slot)
                    }
                }
            }
            escapedHTML = escape(parts[1])
            escapedText = escape(parts[2])
        }

        static func escapedBytes(_ pieces: [EscapedPiece]) -> Int {
            pieces.reduce(0) { total, piece in
                if case .text(let bytes) = piece { return total + bytes.count }
                return total
            }
        }
    }

    enum EscapedPiece: Sendable {
        case text([UInt8])
        case slot(Slot)
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

    /// One customer's values for the slots.
    struct CustomerValues {
        /// `nil` for a customer without a name (the variant without name sections).
        var name: String?
        var emailLink: String
        var smsLink: String
        var unsubscribeLink: String

        init(customerName: String?, emailLink: String, smsLink: String, unsubscribeLink: String) {
            name = customerName.flatMap { $0.isEmpty ? nil : $0 }
            self.emailLink = emailLink
            self.smsLink = smsLink
            self.unsubscribeLink = unsubscribeLink
        }

        subscript(slot: Slot) -> String {
            switch slot {
            case .name: return name ?? ""
            case .emailLink: return emailLink
            case .smsLink: return smsLink
            case .unsubscribeLink: return unsubscribeLink
            }
        }
    }

    private func variant(for values: CustomerValues) -> Variant {
        values.name == nil ? withoutName : withName
    }

    /// A part with the customer's values in its slots, HTML-escaped in the HTML part.
    private static func fill(_ pieces: [Piece], _ values: CustomerValues, html: Bool) -> String {
        var text = ""
        // An email's HTML is kilobytes: one allocation rather than one per doubling.
        text.reserveCapacity(literalBytes(pieces) + 512)
        for piece in pieces {
            switch piece {
            case .text(let literal): text += literal
            case .slot(let slot): text += html ? escapeHTML(values[slot]) : values[slot]
            }
        }
        return text
    }

    /// The message for one customer.
    public func render(
        customerName: String?,
        emailLink: String,
        smsLink: String,
        unsubscribeLink: String = ""
    ) -> RenderedMessage {
        let values = CustomerValues(
            customerName: customerName,
            emailLink: emailLink,
            smsLink: smsLink,
            unsubscribeLink: unsubscribeLink
        )
        let parts = variant(for: values).parts
        let smsText = MessageTemplates.trimmed(Self.fill(parts[3], values, html: false))
        return RenderedMessage(
            emailSubject: MessageTemplates.trimmed(Self.fill(parts[0], values, html: false)),
            emailHTML: Self.fill(parts[1], values, html: true),
            emailText: Self.fill(parts[2], values, html: false),
            smsText: smsText,
            smsSegments: SMSSegments(text: smsText)
        )
    }

    /// One customer's email for a gateway whose body is JSON: the subject as text, the HTML and text parts escaped
    /// for a JSON string (without quotes). Escaping the send's fixed text once, rather than kilobytes of HTML per
    /// message, took a quarter of the daemon's instructions per email off. Unescaped, the parts are the ones
    /// ``render(customerName:emailLink:smsLink:unsubscribeLink:)`` gives.
    public func escapedEmail(
        customerName: String?,
        emailLink: String,
        smsLink: String,
        unsubscribeLink: String
    ) -> (subject: String, html: [UInt8], text: [UInt8]) {
        let values = CustomerValues(
            customerName: customerName,
            emailLink: emailLink,
            smsLink: smsLink,
            unsubscribeLink: unsubscribeLink
        )
        let variant = variant(for: values)
        func fill(_ pieces: [EscapedPiece], html: Bool) -> [UInt8] {
            var writer = JSONBytes(capacity: Variant.escapedBytes(pieces) + 512)
            for piece in pieces {
                switch piece {
                case .text(let escaped): writer.escapedContent(escaped)
                case .slot(let slot): writer.stringContent(html ? Self.escapeHTML(values[slot]) : values[slot])
                }
            }
            return writer.bytes
        }
        return (
            MessageTemplates.trimmed(Self.fill(variant.parts[0], values, html: false)),
            fill(variant.escapedHTML, html: true),
            fill(variant.escapedText, html: false)
        )
    }

    /// One customer's SMS text and its segments, as ``render(customerName:emailLink:smsLink:unsubscribeLink:)``
    /// gives them, without rendering the email.
    public func sms(
        customerName: String?,
        emailLink: String,
        smsLink: String,
        unsubscribeLink: String = ""
    ) -> (text: String, segments: SMSSegments) {
        let values = CustomerValues(
            customerName: customerName,
            emailLink: emailLink,
            smsLink: smsLink,
            unsubscribeLink: unsubscribeLink
        )
        let text = MessageTemplates.trimmed(Self.fill(variant(for: values).parts[3], values, html: false))
        return (text, SMSSegments(text: text))
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

    static func literalBytes(_ pieces: [Piece]) -> Int {
        pieces.reduce(0) { total, piece in
            if case .text(let literal) = piece { return total + literal.utf8.count }
            return total
        }
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

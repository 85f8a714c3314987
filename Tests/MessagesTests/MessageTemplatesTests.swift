import Foundation
import Messages
import TestSupport
import Testing

@Suite struct MessageTemplatesTests {
    let context = MessageContext(
        shopName: "Tom & Jerry's <Shop>",
        customerName: "Ann",
        couponTitle: "10% off",
        couponDescription: "Orders > $50",
        couponEndsAt: nil,
        emailLink: "https://shop.example/login?coupon_claim_token=t&utm_medium=email",
        smsLink: "https://shop.example/login?coupon_claim_token=t&utm_medium=sms"
    )

    @Test func htmlIsEscapedAndTextIsNot() throws {
        let templates = try MessageTemplates(directory: repositoryRoot.appendingPathComponent("templates"))
        let message = templates.render(context)
        #expect(message.emailHTML.contains("Tom &amp; Jerry"))
        #expect(message.emailHTML.contains("&lt;Shop&gt;"))
        #expect(!message.emailHTML.contains("<Shop>"))
        #expect(message.emailHTML.contains("CHECK YOUR COUPON"))
        #expect(message.emailHTML.contains("coupon_claim_token=t&amp;utm_medium=email"))
        #expect(message.emailSubject == "Tom & Jerry's <Shop> has a coupon for you: 10% off")
        #expect(
            message.emailText.contains(
                "CHECK YOUR COUPON: https://shop.example/login?coupon_claim_token=t&utm_medium=email"
            )
        )
        #expect(message.emailText.contains("Hi Ann,"))
        #expect(message.smsText.contains("https://shop.example/login?coupon_claim_token=t&utm_medium=sms"))
        #expect(message.smsSegments == SMSSegments(text: message.smsText))
    }

    @Test func aMissingTemplateIsNamed() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in MessageTemplates.fileNames where name != "sms.mustache" {
            try Data("{{shop_name}}".utf8).write(to: folder.appendingPathComponent(name))
        }
        let error = #expect(throws: TemplateError.self) { try MessageTemplates(directory: folder) }
        #expect(error?.file.hasSuffix("sms.mustache") == true)
        try Data("{{#unclosed}}".utf8).write(to: folder.appendingPathComponent("sms.mustache"))
        let parse = #expect(throws: TemplateError.self) { try MessageTemplates(directory: folder) }
        #expect(parse?.description.contains("not valid Mustache") == true)
    }

    @Test func theEmailIsMarkedWithItsTemplatesLanguageAndDirectionAndIsolatesNames() throws {
        let folder = repositoryRoot.appendingPathComponent("templates")
        let english = try MessageTemplates(directory: folder).render(context)
        #expect(english.emailHTML.contains(#"<html lang="en" dir="ltr">"#))
        #expect(english.emailHTML.contains("Hi <bdi>Ann</bdi>,"))
        let arabic = try MessageTemplates(directory: folder, language: "ar-eg").render(context)
        #expect(arabic.emailHTML.contains(#"<html lang="ar-eg" dir="rtl">"#))
        #expect(MessageTemplates.direction(of: "he") == "rtl" && MessageTemplates.direction(of: "fr_CA") == "ltr")
    }

    @Test func theEmailHasAViewportAColourSchemeAPreheaderAndAFooterWithTheShopsAddress() throws {
        var context = self.context
        context.shopPostalAddress = "1 Market Street, Springfield"
        context.unsubscribeLink = "https://coupond.example/u/1.2.x"
        let html = try MessageTemplates(directory: repositoryRoot.appendingPathComponent("templates")).render(context)
            .emailHTML
        #expect(html.contains(#"<meta name="viewport" content="width=device-width, initial-scale=1">"#))
        #expect(html.contains(#"<meta name="color-scheme" content="light dark">"#))
        #expect(html.contains("max-width: 600px"))
        #expect(html.contains("set aside a coupon for you: 10% off.&#847;"))
        #expect(html.contains("<bdi>1 Market Street, Springfield</bdi>"))
        #expect(html.contains(#"<a class="link" href="https://coupond.example/u/1.2.x""#))
    }
}

@Suite struct PreparedMessageTests {
    @Test(arguments: ["Ann", "Tom & \"Jerry\" <b> O'Neil", "", nil] as [String?])
    func preparedRenderingMatchesFullRendering(name: String?) throws {
        let templates = try MessageTemplates(directory: repositoryRoot.appendingPathComponent("templates"))
        let context = MessageContext(
            shopName: "Shop & Co",
            customerName: name,
            couponTitle: "10% <off>",
            couponDescription: "Orders > $50",
            couponEndsAt: "2026-12-31 23:59",
            emailLink: "https://shop.example/login?a=1&coupon_claim_token=abc&utm_medium=email",
            smsLink: "https://shop.example/login?a=1&coupon_claim_token=abc&utm_medium=sms",
            shopPostalAddress: "1 Rue <Haute> & Co, Paris",
            unsubscribeLink: "https://coupond.example/u/1.2.abc&d"
        )
        let prepared = templates.prepare(context)
        let fast = prepared.render(
            customerName: name,
            emailLink: context.emailLink,
            smsLink: context.smsLink,
            unsubscribeLink: context.unsubscribeLink
        )
        #expect(fast == templates.render(context))
    }

    @Test(arguments: ["Ann", "Tom \"&\" <Jerry>\\ \n O'Neil", "", nil] as [String?])
    func theEscapedEmailAndTheSMSAreWhatTheFullRenderingGives(name: String?) throws {
        let templates = try MessageTemplates(directory: repositoryRoot.appendingPathComponent("templates"))
        let prepared = templates.prepare(
            MessageContext(
                shopName: "Shop \"&\" Co",
                customerName: nil,
                couponTitle: "10% <off>",
                couponDescription: "Orders > $50\nonly",
                couponEndsAt: "2026-12-31 23:59",
                emailLink: "",
                smsLink: "",
                shopPostalAddress: "1 \"Quay\" Road"
            )
        )
        let links = (
            email: "https://s.example/l?a=1&t=x\"y", sms: "https://c.example/c/Q",
            unsubscribe: "https://c.example/u/1.2.z"
        )
        let full = prepared.render(
            customerName: name,
            emailLink: links.email,
            smsLink: links.sms,
            unsubscribeLink: links.unsubscribe
        )
        let escaped = prepared.escapedEmail(
            customerName: name,
            emailLink: links.email,
            smsLink: links.sms,
            unsubscribeLink: links.unsubscribe
        )
        func unescape(_ bytes: [UInt8]) throws -> String? {
            try JSONSerialization.jsonObject(with: Data("\"".utf8 + bytes + "\"".utf8), options: .fragmentsAllowed)
                as? String
        }
        #expect(escaped.subject == full.emailSubject)
        #expect(try unescape(escaped.html) == full.emailHTML)
        #expect(try unescape(escaped.text) == full.emailText)
        let sms = prepared.sms(customerName: name, emailLink: links.email, smsLink: links.sms)
        #expect(sms.text == full.smsText && sms.segments == full.smsSegments)
    }

    @Test(arguments: ["Ann", "Tom & <Jerry>", ""])
    func theBatchTemplateFilledInIsTheSameEmailAsTheOneRenderedPerCustomer(name: String) throws {
        let templates = try MessageTemplates(directory: repositoryRoot.appendingPathComponent("templates"))
        let prepared = templates.prepare(
            MessageContext(
                shopName: "Shop & Co",
                customerName: nil,
                couponTitle: "10% <off>",
                couponDescription: "Orders > $50",
                couponEndsAt: "2026-12-31 23:59",
                emailLink: "",
                smsLink: ""
            )
        )
        let link = "https://shop.example/login?coupon_claim_token=Zx9&utm_medium=email&utm_campaign=coupon-1"
        let unsubscribe = "https://coupond.example/u/4.5.Mac&mac"
        let expected = prepared.render(customerName: name, emailLink: link, smsLink: "", unsubscribeLink: unsubscribe)
        let template = prepared.emailTemplate(withName: !name.isEmpty)
        let values = prepared.substitutions(
            customerName: name,
            emailLink: link,
            smsLink: "",
            unsubscribeLink: unsubscribe
        )
        func fill(_ text: String) -> String {
            values.reduce(text) { $0.replacingOccurrences(of: $1.tag.rawValue, with: $1.value) }
        }
        #expect(fill(template.subject) == expected.emailSubject)
        #expect(fill(template.html) == expected.emailHTML)
        #expect(fill(template.text) == expected.emailText)
        #expect(template.html.contains(PreparedMessage.SubstitutionTag.emailLinkHTML.rawValue))
        #expect(expected.emailHTML.contains(#"href="https://coupond.example/u/4.5.Mac&amp;mac""#))
        #expect(expected.emailText.contains("Unsubscribe: \(unsubscribe)"))
    }
}

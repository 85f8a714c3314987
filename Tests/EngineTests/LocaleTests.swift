import Foundation
import Postgres
import TestSupport
import Testing

/// Messages in the customer's language: `templates/<locale>/` chosen by `customers.locale`, then the shop's, then the
/// default templates.
@Suite(.serialized) struct LocaleTests {
    /// The shipped templates as the default, with a French and an Arabic (right-to-left) set beside them.
    static func templatesFolder(_ h: EngineHarness) throws -> URL {
        let folder = h.folder.appendingPathComponent("templates-\(UUID().uuidString.prefix(6))")
        try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("templates"), to: folder)
        let sets = [
            "fr": [
                "email_subject.mustache": "Un coupon pour vous chez {{shop_name}}",
                "email.html.mustache":
                    #"<html lang="fr"><body><p>Bonjour{{#customer_name}} <bdi>{{customer_name}}</bdi>{{/customer_name}}, <a href="{{email_link}}">VOIR MON COUPON</a></p></body></html>"#,
                "email.txt.mustache": "Bonjour, votre coupon : {{email_link}}",
                "sms.mustache": "{{shop_name}} : un coupon pour vous. {{sms_link}}",
            ],
            "ar": [
                "email_subject.mustache": "قسيمة لك من {{shop_name}}",
                "email.html.mustache":
                    #"<html lang="ar" dir="rtl"><body><p>مرحبا{{#customer_name}} <bdi>{{customer_name}}</bdi>{{/customer_name}}، <a href="{{email_link}}">اعرض قسيمتي</a></p></body></html>"#,
                "email.txt.mustache": "مرحبا، قسيمتك: {{email_link}}",
                "sms.mustache": "{{shop_name}}: قسيمة خصم خاصة لك، استخدمها قبل نهاية الأسبوع. {{sms_link}}",
            ],
        ]
        for (locale, files) in sets {
            let directory = folder.appendingPathComponent(locale)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for (name, text) in files { try Data(text.utf8).write(to: directory.appendingPathComponent(name)) }
        }
        return folder
    }

    @Test(arguments: [1, 10])
    func eachCustomerGetsTheirLocalesMessageAndArabicSMSAreCountedInUCS2(recipientsPerRequest: Int) throws {
        try EngineHarness.with { h in
            let templates = try Self.templatesFolder(h)
            let group = try h.fixtures.group(shop: h.shop, members: 4)
            let ids: [Int64] = try h.db.connection.query(
                "SELECT customer_id FROM coupond.group_members WHERE group_id = \(group) ORDER BY customer_id"
            ).map { try $0.decode("customer_id") }
            // fr-CA has no folder of its own: its language's. German has none at all: the shop's (en), then default.
            for (id, locale) in zip(ids, ["fr-CA", "ar", "de", nil]) {
                try h.db.connection.execute("UPDATE coupond.customers SET locale = \(locale) WHERE id = \(id)")
            }
            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop, unlimited))
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "webhook",
                    smsProvider: "webhook",
                    extraEmail: #", "recipients_per_request": \#(recipientsPerRequest)"#
                ),
                environment: ["COUPOND_TEMPLATES": templates.path]
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done", "\(daemon.stderr.suffix(1500))")

            let messages = try h.messages()
            func message(_ id: Int64, _ channel: String) throws -> [String: Any] {
                let row = try h.db.connection.queryRow("SELECT email, mobile FROM coupond.customers WHERE id = \(id)")!
                let address = channel == "email" ? row["email"] : row["mobile"]
                return messages.first { $0["channel"] as? String == channel && $0["to"] as? String == address } ?? [:]
            }
            #expect(try message(ids[0], "email")["subject"] as? String == "Un coupon pour vous chez Test Shop")
            #expect((try message(ids[0], "sms")["text"] as? String)?.contains("un coupon pour vous") == true)
            let arabic = try message(ids[1], "email")
            #expect((arabic["subject"] as? String)?.hasPrefix("قسيمة لك من") == true)
            #expect((arabic["text"] as? String)?.hasPrefix("مرحبا، قسيمتك:") == true)
            for id in ids[2...] {
                let subject = try message(id, "email")["subject"] as? String ?? ""
                #expect(!subject.contains("Un coupon") && !subject.contains("قسيمة"), "\(subject)")
            }
            let segments = try h.db.connection.query(
                "SELECT customer_id, sms_segments FROM coupond.send_recipients WHERE send_id = \(send) ORDER BY 1"
            ).map { try $0.decode("sms_segments", as: Int.self) }
            // The French SMS fits one GSM-7 segment; the Arabic one is UCS-2, 70 characters a segment, and takes two.
            #expect(segments[0] == 1 && segments[1] == 2, "\(segments)")
        }
    }

    @Test func previewRendersTheLocaleAskedForAndSaysWhichTemplates() throws {
        try EngineHarness.with { h in
            let templates = try Self.templatesFolder(h)
            let group = try h.fixtures.group(shop: h.shop, members: 1)
            let coupon = try h.fixtures.coupon(shop: h.shop)
            let preview = try runProduct(
                "coupond",
                [
                    "preview", "--shop", "\(h.shop)", "--group", "\(group)", "--coupon", "\(coupon)", "--locale", "ar",
                    "--templates", templates.path, "--config", try h.configuration().path, "--json",
                ],
                environment: h.db.environment.mapValues { $0 }
            )
            #expect(preview.status == 0, "\(preview.stderr)")
            let output = try JSONSerialization.jsonObject(with: Data(preview.stdout.utf8)) as? [String: Any]
            #expect(output?["locale"] as? String == "ar")
            #expect(output?["sms_encoding"] as? String == "UCS-2")
            #expect(output?["sms_segments"] as? Int == 2)
            #expect((output?["email_html"] as? String)?.contains(#"<html lang="ar" dir="rtl">"#) == true)
        }
    }
}

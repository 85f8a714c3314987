import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// The shipped email as a reader sees it: rendered by headless Chromium (`scripts/render-check.py`) at desktop width
/// and on a phone, in light and dark mode, for a real sent message and for `coupond preview`, which must agree.
@Suite(.serialized) struct EmailRenderingTests {
    /// What render-check.py measured of one file in one view.
    struct View: Decodable {
        struct Link: Decodable {
            var href: String
            var text: String
            var left, right, top, bottom, width, height: Double
            var color, background, around: String
        }
        var file, view, scheme: String
        var innerWidth, innerHeight, scrollWidth: Double
        var lang, dir: String?
        var bodyBackground: String
        var links: [Link]
    }

    /// Chromium's measurements of `files`; the PNGs go next to them.
    static func render(_ files: [URL]) throws -> [View] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments =
            [repositoryRoot.appendingPathComponent("scripts/render-check.py").path, "--screenshots"]
            + [files[0].deletingLastPathComponent().path] + files.map(\.path)
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw HarnessError("render-check.py failed (\(process.terminationStatus)): \(stderr)")
        }
        return try JSONDecoder().decode([View].self, from: data)
    }

    /// Relative luminance of `rgb(r, g, b)` (WCAG 2).
    static func luminance(_ colour: String) -> Double {
        let numbers = colour.split(whereSeparator: { !"0123456789.".contains($0) }).compactMap { Double($0) }
        func channel(_ value: Double) -> Double {
            let c = value / 255
            return c <= 0.03928 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4)
        }
        guard numbers.count >= 3 else { return 1 }
        return 0.2126 * channel(numbers[0]) + 0.7152 * channel(numbers[1]) + 0.0722 * channel(numbers[2])
    }

    static func contrast(_ a: String, _ b: String) -> Double {
        let (x, y) = (luminance(a), luminance(b))
        return (max(x, y) + 0.05) / (min(x, y) + 0.05)
    }

    /// The claim token and the unsubscribe token are each customer's own: everything else is the same for all.
    static func withoutPersonalLinks(_ html: String) -> String {
        html.replacingOccurrences(
            of: #"coupon_claim_token=[^&"<\s]*"#,
            with: "coupon_claim_token=T",
            options: .regularExpression
        )
        .replacingOccurrences(of: #"/u/[^"<\s]*"#, with: "/u/T", options: .regularExpression)
    }

    @Test func theSentEmailAndItsPreviewAreTheSameAndReadWellOnDesktopAndPhoneInLightAndDark() throws {
        try EngineHarness.with { h in
            let daemon = try h.startDaemon(config: try h.configuration(emailProvider: "webhook"))
            defer { _ = daemon.terminate() }
            let group = try h.fixtures.group(shop: h.shop, members: 2)
            let customer: Int64 = try h.db.connection.queryRow(
                "SELECT min(customer_id) AS id FROM coupond.group_members WHERE group_id = \(group)"
            )!.decode("id")
            // A long name must not push the layout wider than a phone.
            try h.db.connection.execute(
                "UPDATE coupond.customers SET name = 'Maximiliana Featherstonehaugh-Wolfeschlegelsteinhausen' WHERE id = \(customer)"
            )
            let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop), sms: false)
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done")
            let address: String = try h.db.connection.queryRow(
                "SELECT email FROM coupond.customers WHERE id = \(customer)"
            )!.decode("email")
            let sent = try #require(
                try h.messages().first { $0["to"] as? String == address }?["html"] as? String
            )
            let preview = try runProduct(
                "coupond",
                [
                    "preview", "--send", "\(send)", "--customer", "\(customer)", "--config",
                    try h.configuration().path, "--json",
                ],
                environment: h.db.environment.mapValues { $0 }
            )
            #expect(preview.status == 0, "\(preview.stderr)")
            let previewed = try #require(
                (try JSONSerialization.jsonObject(with: Data(preview.stdout.utf8)) as? [String: Any])?["email_html"]
                    as? String
            )
            #expect(sent != previewed, "the sent email carries real tokens, the preview samples")
            #expect(Self.withoutPersonalLinks(sent) == Self.withoutPersonalLinks(previewed))

            let folder = h.folder.appendingPathComponent("rendered")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let files = [folder.appendingPathComponent("sent.html"), folder.appendingPathComponent("preview.html")]
            try Data(sent.utf8).write(to: files[0])
            try Data(previewed.utf8).write(to: files[1])
            let views = try Self.render(files)
            #expect(views.count == 8)
            for view in views {
                let name = "\(view.file) \(view.view) \(view.scheme)"
                // A phone lays the page out at its own width (the viewport meta), not at 980 px shrunk to fit.
                #expect(view.innerWidth == (view.view == "phone" ? 390 : 1200), "\(name)")
                #expect(view.scrollWidth <= view.innerWidth, "\(name): the page scrolls sideways")
                #expect(view.lang == "en" && view.dir == "ltr", "\(name)")
                let button = try #require(view.links.first { $0.text == "CHECK YOUR COUPON" }, "\(name)")
                #expect(button.left >= 0 && button.right <= view.innerWidth, "\(name): button off screen")
                #expect(button.top >= 0 && button.bottom <= view.innerHeight, "\(name): button below the fold")
                #expect(button.height >= 44, "\(name): button smaller than a finger")
                #expect(Self.contrast(button.color, button.background) >= 4.5, "\(name): button label unreadable")
                #expect(Self.contrast(button.background, button.around) >= 3, "\(name): button vanishes")
                let unsubscribe = try #require(view.links.first { $0.text == "Unsubscribe" }, "\(name)")
                #expect(unsubscribe.href.contains("/u/\(send).\(customer)."))
                #expect(unsubscribe.width > 0 && unsubscribe.right <= view.innerWidth, "\(name)")
                #expect(view.links.contains { $0.text.hasPrefix("https://") && $0.href == button.href }, "\(name)")
                if view.scheme == "dark" {
                    #expect(Self.luminance(view.bodyBackground) < 0.05, "\(name): still light in dark mode")
                }
            }
        }
    }

    @Test func anArabicCustomersEmailReadsRightToLeftWithinAPhonesWidth() throws {
        try EngineHarness.with { h in
            // An Arabic translation of the shipped email: the same layout, in `templates/ar/`.
            let templates = h.folder.appendingPathComponent("templates-rtl")
            try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("templates"), to: templates)
            let arabic = templates.appendingPathComponent("ar")
            try FileManager.default.createDirectory(at: arabic, withIntermediateDirectories: true)
            let translations = [
                ("CHECK YOUR COUPON", "اعرض قسيمتك"), (">Unsubscribe<", ">إلغاء الاشتراك<"), ("Hi ", "مرحبا "),
                ("has set aside a coupon for you.", "خصص لك قسيمة."),
            ]
            for name in ["email_subject.mustache", "email.html.mustache", "email.txt.mustache", "sms.mustache"] {
                var text = try String(contentsOf: templates.appendingPathComponent(name), encoding: .utf8)
                for (english, translated) in translations {
                    text = text.replacingOccurrences(of: english, with: translated)
                }
                try Data(text.utf8).write(to: arabic.appendingPathComponent(name))
            }
            let daemon = try h.startDaemon(
                config: try h.configuration(emailProvider: "webhook"),
                environment: ["COUPOND_TEMPLATES": templates.path]
            )
            defer { _ = daemon.terminate() }
            let group = try h.fixtures.group(shop: h.shop, members: 1)
            try h.db.connection.execute(
                "UPDATE coupond.customers SET name = 'مريم الحسيني', locale = 'ar-EG' WHERE id IN (SELECT customer_id FROM coupond.group_members WHERE group_id = \(group))"
            )
            let send = try h.schedule(group: group, coupon: try h.fixtures.coupon(shop: h.shop), sms: false)
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done")
            let sent = try #require(try h.messages().first?["html"] as? String)
            #expect(sent.contains("مرحبا <bdi>مريم الحسيني</bdi>,"))
            let file = h.folder.appendingPathComponent("arabic.html")
            try Data(sent.utf8).write(to: file)
            for view in try Self.render([file]) {
                let name = "\(view.view) \(view.scheme)"
                #expect(view.lang == "ar" && view.dir == "rtl", "\(name)")
                #expect(view.scrollWidth <= view.innerWidth, "\(name): the page scrolls sideways")
                let button = try #require(view.links.first { $0.text == "اعرض قسيمتك" }, "\(name)")
                #expect(button.left >= 0 && button.right <= view.innerWidth, "\(name): button off screen")
                // Right to left, the button starts from the right-hand edge of the card.
                #expect(button.left > view.innerWidth / 3, "\(name): button laid out from the left")
                #expect(view.links.contains { $0.text == "إلغاء الاشتراك" && $0.href.contains("/u/\(send).") })
            }
        }
    }
}

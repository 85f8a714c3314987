import Delivery
import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Customer addresses are untrusted input: an address that is not a plain mailbox (or an E.164 number) fails that
/// customer's channel as `invalid_email_address` (`invalid_mobile_number`), and nothing of it reaches a gateway.
@Suite(.serialized) struct AddressValidationTests {
    /// Addresses a hostile shopper or a careless upstream system could store, each of which must be refused.
    static let hostileEmails = [
        "victim@mail.example>\r\nRCPT TO:<attacker@evil.example",
        "x@mail.example\r\nRSET\r\nMAIL FROM:<ceo@bank.example>\r\nRCPT TO:<target@victim.example>\r\nDATA\r\nspoof\r\n.",
        "x@mail.example\nRCPT TO:<lf@evil.example>",
        "x@mail.example\rRCPT TO:<cr@evil.example>",
        "<angle@mail.example>",
        "two words@mail.example",
        "tab\t@mail.example",
        "quoted\"@mail.example",
        "no-at-sign.example",
        "@mail.example",
        "local@",
        "dots..together@mail.example",
        ".leading@mail.example",
        "trailing.@mail.example",
        "x@-hyphen.example",
        "x@hyphen-.example",
        "x@double..dot.example",
        "x@mail.example.",
        "a@b@mail.example",
        "jos\u{E9}@mail.example",
        "x@m\u{E4}il.example",
        "x@mail.example\u{2028}RCPT TO:<ls@evil.example>",
        "del\u{7F}@mail.example",
        String(repeating: "l", count: 65) + "@mail.example",
        "x@" + Array(repeating: String(repeating: "d", count: 60), count: 5).joined(separator: "."),
    ]
    static let plainEmails = [
        "ana@shop.example", "first.last+coupons@sub.mail.example", "o'brien@shop.example", "x@localhost",
        "UPPER_case-1{2}~!#$%&*/=?^`|@xn--mil-moa.example", String(repeating: "l", count: 64) + "@mail.example",
    ]

    @Test func theDatabaseAndTheGatewaysDrawTheSameLineBetweenPlainAndHostileEmailAddresses() throws {
        try TestDatabase.with { db in
            for address in Self.hostileEmails + Self.plainEmails {
                let sql: String? = try db.connection.queryRow(
                    "SELECT coupond.email_unreachable(\(address), true) AS problem"
                )?["problem"]
                let swift = RecipientAddress.problem(address, email: true)?.rawValue
                #expect(sql == swift, "\(address.debugDescription): SQL \(sql ?? "nil"), Swift \(swift ?? "nil")")
                let expected = Self.plainEmails.contains(address) ? nil : "invalid_email_address"
                #expect(sql == expected, "\(address.debugDescription)")
            }
        }
    }

    @Test func theDatabaseAndTheGatewaysDrawTheSameLineForMobileNumbers() throws {
        try TestDatabase.with { db in
            let numbers = [
                "+15551230001", "+919876543210", "+1555\r\n123", "15551230001", "+0555123000", "+1 555 123 0001",
                "+1555", "+1234567890123456", "+１５５５１２３０００１",
            ]
            for number in numbers {
                let sql: String? = try db.connection.queryRow(
                    "SELECT coupond.sms_unreachable(\(number), true) AS problem"
                )?["problem"]
                #expect(sql == RecipientAddress.problem(number, email: false)?.rawValue, "\(number.debugDescription)")
            }
        }
    }

    @Test func anEmailAddressCarryingSMTPCommandsFailsThatCustomerAloneAndNoInjectedLineReachesTheServer() throws {
        try EngineHarness.with { h in
            let out = h.folder.appendingPathComponent("smtp-lines.jsonl")
            let server = try ChildProcess(
                executable: repositoryRoot.appendingPathComponent("scripts/smtp-lines.py"),
                ["--out", out.path],
                folder: h.folder
            )
            defer { _ = server.terminate(timeout: 5) }
            guard let output = server.waitForOutput("listening on "),
                let port = output.split(separator: ":").last?.split(separator: "\n").first
            else { throw HarnessError("smtp-lines did not start: \(server.stderr)") }

            let hostile = Array(Self.hostileEmails.prefix(5))
            let group = try h.fixtures.group(shop: h.shop, members: 20)
            let ids: [Int64] = try h.db.connection.query(
                "SELECT customer_id FROM coupond.group_members WHERE group_id = \(group) ORDER BY customer_id"
            ).map { try $0.decode("customer_id") }
            for (index, address) in hostile.enumerated() {
                try h.db.connection.execute("UPDATE coupond.customers SET email = \(address) WHERE id = \(ids[index])")
            }
            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let send = try h.schedule(
                group: group,
                coupon: try h.fixtures.coupon(shop: h.shop, unlimited),
                sms: false
            )
            let credential = h.folder.appendingPathComponent("smtp-login")
            try Data("coupons:s3cret\n".utf8).write(to: credential)
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "smtp",
                    extraEmail: #", "smtp_starttls": "off""#,
                    emailURL: "smtp://127.0.0.1:\(port)",
                    emailCredentialFile: credential.path
                )
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done", "\(daemon.stderr.suffix(2000))")
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == 15)
            #expect(try row.decode("failed_count", as: Int.self) == 5)
            let errors: [String?] = try h.db.connection.query(
                "SELECT email_error FROM coupond.send_recipients WHERE send_id = \(send) ORDER BY customer_id"
            ).map { $0["email_error"] }
            #expect(Array(errors.prefix(5)) == Array(repeating: "invalid_email_address", count: 5))
            #expect(errors.dropFirst(5).allSatisfy { $0 == nil })
            // The failure report names the reason in words.
            var reasons: [String] = []
            try FailureReport.rows(sendID: send, on: h.db.connection) { reasons.append($0[4] ?? "") }
            #expect(reasons.count == 5 && reasons.allSatisfy { $0.hasPrefix("Invalid email address") }, "\(reasons)")

            #expect(try eventually(timeout: 10) { try h.send(send)["notice_status"] == "sent" })
            let lines = try String(contentsOf: out, encoding: .utf8).split(separator: "\n").compactMap {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }.compactMap { $0["line"] as? String }
            let commands = lines.filter { $0.hasPrefix("RCPT") || $0.hasPrefix("MAIL") || $0.hasPrefix("RSET") }
            // 15 customers and the merchant's notice: one MAIL and one RCPT each, nothing else.
            #expect(commands.filter { $0.hasPrefix("RCPT TO:") }.count == 16, "\(commands)")
            #expect(commands.filter { $0.hasPrefix("MAIL FROM:<coupons@shop.example>") }.count == 16, "\(commands)")
            #expect(!commands.contains { $0.hasPrefix("RSET") })
            for injected in ["attacker@evil.example", "ceo@bank.example", "target@victim.example", "spoof"] {
                #expect(!lines.contains { $0.contains(injected) }, "\(injected) reached the SMTP server")
            }
            #expect(!daemon.stderr.contains("gateway unavailable"), "one bad address opened the circuit breaker")
        }
    }
}

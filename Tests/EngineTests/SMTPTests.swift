import Foundation
import Postgres
import TestSupport
import Testing

/// Email through an SMTP server (`email.provider = "smtp"`), against a real one on loopback: Debian's aiosmtpd, run by
/// `scripts/smtp-sink.py`, which records every message it takes.
@Suite(.serialized) struct SMTPTests {
    /// A started sink and the file its messages go to.
    static func startSink(_ h: EngineHarness, refuse: [String]) throws -> (ChildProcess, URL, port: String) {
        let out = h.folder.appendingPathComponent("smtp-\(UUID().uuidString.prefix(6)).jsonl")
        let sink = try ChildProcess(
            executable: repositoryRoot.appendingPathComponent("scripts/smtp-sink.py"),
            ["--out", out.path, "--user", "coupons", "--password", "s3cret"] + refuse.flatMap { ["--refuse", $0] },
            folder: h.folder
        )
        guard let output = sink.waitForOutput("listening on "),
            let port = output.split(separator: ":").last?.split(separator: "\n").first
        else { throw HarnessError("smtp sink did not start: \(sink.stderr)") }
        return (sink, out, String(port))
    }

    static func messages(_ file: URL) throws -> [[String: Any]] {
        let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        return try text.split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    @Test func emailGoesOutOverSMTPWithAuthOnFewConnectionsAndARefusedRecipientFailsAlone() throws {
        try EngineHarness.with { h in
            let group = try h.fixtures.group(shop: h.shop, members: 20)
            let ids: [Int64] = try h.db.connection.query(
                "SELECT customer_id FROM coupond.group_members WHERE group_id = \(group) ORDER BY customer_id"
            ).map { try $0.decode("customer_id") }
            let refused = try h.db.connection.queryRow("SELECT email FROM coupond.customers WHERE id = \(ids[3])")![
                "email"
            ]!
            let (sink, out, port) = try Self.startSink(h, refuse: [refused])
            defer { _ = sink.terminate(timeout: 5) }
            let credential = h.folder.appendingPathComponent("smtp-login")
            try Data("coupons:s3cret\n".utf8).write(to: credential)
            var unlimited = Fixtures.Coupon()
            unlimited.receiveLimit = nil
            let send = try h.schedule(
                group: group,
                coupon: try h.fixtures.coupon(shop: h.shop, unlimited),
                sms: false
            )
            // At most two transfers at a time: twenty messages must share two connections.
            let daemon = try h.startDaemon(
                config: try h.configuration(
                    emailProvider: "smtp",
                    extraEngine: #", "max_in_flight": 2"#,
                    extraEmail: #", "smtp_starttls": "off""#,
                    emailURL: "smtp://127.0.0.1:\(port)",
                    emailCredentialFile: credential.path
                )
            )
            defer { _ = daemon.terminate() }
            try h.arrive()
            #expect(try h.waitUntilFinished(send) == "done", "\(daemon.stderr.suffix(2000))")
            let row = try h.send(send)
            #expect(try row.decode("sent_count", as: Int.self) == 19)
            #expect(try row.decode("failed_count", as: Int.self) == 1)
            let error = try h.db.connection.queryRow(
                "SELECT email_error FROM coupond.send_recipients WHERE send_id = \(send) AND customer_id = \(ids[3])"
            )?["email_error"]
            #expect(error == "gateway_refused")

            let messages = try Self.messages(out)
            let customerMessages = messages.filter { ($0["to"] as? [String])?.first != "owner@shop.example" }
            #expect(customerMessages.count == 19)
            #expect(Set(customerMessages.compactMap { ($0["to"] as? [String])?.first }).count == 19)
            let sessions = Set(customerMessages.compactMap { $0["session"] as? Int })
            // Two at a time, and a new one after a refused recipient (libcurl closes that connection): far fewer than
            // the messages.
            #expect(sessions.count <= 5, "\(sessions.count) connections for 19 messages")

            let first = try #require(customerMessages.first?["data"] as? String)
            #expect(first.contains("From: <coupons@shop.example>"))
            #expect(first.contains("Content-Type: multipart/alternative"))
            #expect(first.contains("Message-ID: <coupond-"))
            #expect(first.contains("\r\nList-Unsubscribe: <https://coupond.example/u/\(send)."))
            #expect(first.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"))
            let parts = first.components(separatedBy: "Content-Transfer-Encoding: base64\r\n\r\n")
            #expect(parts.count == 3)
            let text = parts.dropFirst().first.flatMap { part in
                Data(
                    base64Encoded: part.components(separatedBy: "\r\n--").first ?? "",
                    options: .ignoreUnknownCharacters
                )
            }
            #expect(text.map { String(decoding: $0, as: UTF8.self) }?.contains("coupon_claim_token=") == true)
            // The merchant's notice goes out the same way.
            #expect(try eventually(timeout: 10) { try h.send(send)["notice_status"] == "sent" })
        }
    }

    @Test func aWrongPasswordFailsTheMessagesAsRefusedAndNamesTheServersAnswer() throws {
        try EngineHarness.with { h in
            let (sink, out, port) = try Self.startSink(h, refuse: [])
            defer { _ = sink.terminate(timeout: 5) }
            let credential = h.folder.appendingPathComponent("smtp-login")
            try Data("coupons:wrong".utf8).write(to: credential)
            let send = try h.schedule(
                group: try h.fixtures.group(shop: h.shop, members: 2),
                coupon: try h.fixtures.coupon(shop: h.shop),
                sms: false
            )
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
            #expect(try h.waitUntilFinished(send) == "done")
            #expect(try h.send(send).decode("failed_count", as: Int.self) == 2)
            #expect(try Self.messages(out).isEmpty)
            #expect(daemon.stderr.contains("SMTP 535"), "\(daemon.stderr.suffix(1500))")
        }
    }
}

import CoupondDaemon
import Foundation
import HTTPEndpoints
import Messages
import Postgres
import Storage
import Testing

/// The configuration file as `coupond run` and every command read it: one Decodable type, defaults in one place,
/// errors that name the setting and the file.
struct ConfigurationTests {
    static func decode(_ json: String) throws -> Configuration {
        try Configuration.decode(Data(json.utf8), source: "/etc/coupond/coupond.json")
    }

    /// The error `json` is refused with.
    static func refusal(_ json: String) -> String? {
        do {
            _ = try decode(json)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func anEmptyFileGivesEveryDefault() throws {
        let configuration = try Self.decode("{}")
        #expect(configuration.pollInterval == 5)
        #expect(configuration.leaseSeconds == 30)
        #expect(configuration.batchSize == 500)
        #expect(configuration.listen)
        #expect(configuration.shortSMSLinks && !configuration.shortEmailLinks)
        #expect(configuration.email.provider == "webhook" && configuration.email.onUnknown == "skip")
        #expect(configuration.sms.reconcileAfter == 10 && configuration.sms.breakerFailures == 10)
        #expect(configuration.roles.daemon == RoleNames().daemon)
        #expect(configuration.httpListen == nil && configuration.databaseURL == nil)
    }

    @Test func settingsAreReadFromTheirSections() throws {
        let configuration = try Self.decode(
            """
            {"database": {"url": "postgresql:///coupond", "statement_timeout_seconds": 0, "daemon_role": "sender"},
             "engine": {"lease_seconds": 12.5, "batch_size": 200, "listen": false},
             "email": {"provider": "sendgrid", "recipients_per_request": 1000, "max_attempts": 3},
             "sms": {"provider": "twilio", "account_sid": "AC1", "price_per_segment": "0.0075"},
             "links": {"public_base_url": "https://c.example/", "short_email_links": true},
             "http": {"listen": "[::1]:8080"}}
            """
        )
        #expect(configuration.databaseURL == "postgresql:///coupond")
        #expect(configuration.safeguards.statementTimeout == 0)
        #expect(configuration.roles.daemon == "sender" && configuration.roles.platform == RoleNames().platform)
        #expect(configuration.leaseSeconds == 12.5 && configuration.batchSize == 200 && !configuration.listen)
        #expect(configuration.email.provider == "sendgrid" && configuration.email.recipientsPerRequest == 1000)
        #expect(configuration.email.maxAttempts == 3 && configuration.sms.maxAttempts == nil)
        #expect(configuration.sms.accountSID == "AC1")
        #expect(configuration.smsPricePerSegment == Decimal(string: "0.0075"))
        #expect(configuration.shortLinks?.link(.email, code: "x") == "https://c.example/e/x")
        #expect(configuration.httpListen?.host == "::1" && configuration.httpListen?.port == 8080)
    }

    @Test(arguments: [
        (#"{"engine": {"batch_sise": 10}}"#, "engine.batch_sise is not a known setting (in /etc/coupond/coupond.json)"),
        (#"{"engines": {}}"#, "engines is not a known setting"),
        // Each channel has only its own settings.
        (#"{"email": {"account_sid": "AC1"}}"#, "email.account_sid is not a known setting"),
        (#"{"sms": {"recipients_per_request": 2}}"#, "sms.recipients_per_request is not a known setting"),
        (#"{"sms": {"smtp_starttls": "off"}}"#, "sms.smtp_starttls is not a known setting"),
    ])
    func anUnknownSettingIsRefusedByItsName(json: String, message: String) {
        #expect(Self.refusal(json)?.contains(message) == true, "\(Self.refusal(json) ?? "accepted")")
    }

    @Test(arguments: [
        (#"{"engine": {"lease_seconds": 0}}"#, "engine.lease_seconds must be a number of seconds above 0"),
        (#"{"engine": {"lease_seconds": "30"}}"#, "engine.lease_seconds must be a number of seconds above 0"),
        (#"{"engine": {"batch_size": 2.5}}"#, "engine.batch_size must be a whole number from 1"),
        // Durations become whole milliseconds: a value that would not fit, or crash the conversion, is refused.
        (#"{"email": {"timeout_seconds": 1e300}}"#, "email.timeout_seconds must be a number of seconds above 0"),
        (#"{"sms": {"connect_timeout_seconds": 1e19}}"#, "sms.connect_timeout_seconds must be a number of seconds"),
        (
            #"{"engine": {"shutdown_grace_seconds": 1e300}}"#,
            "engine.shutdown_grace_seconds must be a number of seconds"
        ),
        (#"{"database": {"statement_timeout_seconds": 4e9}}"#, "database.statement_timeout_seconds must be"),
        (#"{"http": {"write_timeout_seconds": 1e300}}"#, "http.write_timeout_seconds must be a number of seconds"),
        (#"{"email": {"rate_per_second": 1e300}}"#, "email.rate_per_second must be a positive number, at most"),
        (#"{"http": {"max_connections": 0}}"#, "http.max_connections must be a whole number from 1 to 1000000"),
        (#"{"http": {"max_connections_per_address": -1}}"#, "http.max_connections_per_address must be a whole"),
        (#"{"engine": {"listen": 1}}"#, "engine.listen must be true or false"),
        (
            #"{"database": {"keepalives_idle_seconds": -1}}"#,
            "database.keepalives_idle_seconds must be a number of seconds from 0 to 31536000"
        ),
        (#"{"database": {"daemon_role": "Coupond-Daemon"}}"#, "database.daemon_role must be a role name"),
        (#"{"sms": {"price_per_segment": 0.05}}"#, "sms.price_per_segment must be a string"),
        (#"{"sms": {"price_per_segment": "five"}}"#, "sms.price_per_segment must be a price"),
        (#"{"http": {"listen": "8080"}}"#, "http.listen must be host:port, such as 127.0.0.1:8080"),
        (#"{"links": []}"#, "links must be an object"),
        (#"{"links": {"public_base_url": null}}"#, "links.public_base_url must be a string"),
    ])
    func aWrongValueIsRefusedNamingTheSettingAndWhatItMustBe(json: String, message: String) {
        let refusal = Self.refusal(json)
        #expect(refusal?.contains(message) == true, "\(refusal ?? "accepted")")
        #expect(refusal?.contains("(in /etc/coupond/coupond.json)") == true)
    }

    @Test func aKeySetTwiceIsRefusedByItsNameInsteadOfTheFirstQuietlyWinning() {
        #expect(
            Self.refusal(#"{"engine": {"batch_size": 10}, "engine": {"batch_size": 20}}"#)
                == "configuration: engine is set more than once (in /etc/coupond/coupond.json)"
        )
        #expect(
            Self.refusal(#"{"email": {"timeout_seconds": 5, "url": "http://x", "timeout_seconds": 600}}"#)
                == "configuration: email.timeout_seconds is set more than once (in /etc/coupond/coupond.json)"
        )
    }

    @Test func theListenersLimitsAreRead() throws {
        let configuration = try Configuration.decode(
            Data(
                #"""
                {"http": {"max_connections": 64, "max_connections_per_address": 8, "header_timeout_seconds": 2,
                          "body_timeout_seconds": 3, "idle_timeout_seconds": 4, "write_timeout_seconds": 5,
                          "max_report_downloads": 2}}
                """#.utf8
            ),
            source: "test"
        )
        let limits = configuration.httpLimits
        #expect(limits.maxConnections == 64 && limits.maxConnectionsPerAddress == 8)
        #expect(limits.headerTimeout == 2 && limits.bodyTimeout == 3 && limits.idleTimeout == 4)
        #expect(limits.writeTimeout == 5 && limits.maxReportDownloads == 2)
    }

    @Test func aKeyThatCannotTravelAsABearerTokenIsRefusedAndAGoodOneReadsBackByteForByte() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // Two byte strings that text decoding with replacement would make one key, a control byte, a space.
        for bytes in [
            [0xFF] + Array("0123456789abcdef".utf8), [0xFE] + Array("0123456789abcdef".utf8),
            Array("0123456789\u{1}abcdef".utf8), Array("0123456789 abcdef".utf8),
        ] {
            let file = folder.appendingPathComponent("key")
            try Data(bytes).write(to: file)
            #expect(throws: ConfigurationError.self, "\(bytes)") {
                try Daemon.tokenSecret(file.path, setting: "http.claims_key_file", minimumBytes: 16)
            }
        }
        let good = folder.appendingPathComponent("good")
        try Data("q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=\n".utf8).write(to: good)
        #expect(
            try Daemon.tokenSecret(good.path, setting: "http.claims_key_file", minimumBytes: 16)
                == "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng="
        )
    }

    @Test func aFileThatIsNotJSONIsRefusedNamingTheFile() {
        #expect(Self.refusal("engine = 5") == "configuration: /etc/coupond/coupond.json is not valid JSON")
        #expect(Self.refusal("[1]") == "configuration: /etc/coupond/coupond.json is not a JSON object")
    }

    @Test func theEnvironmentOverridesTheFileAndSystemdCredentialsFillInSecrets() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("coupond-credentials-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data("k".utf8).write(to: folder.appendingPathComponent("claim-key"))
        let file = folder.appendingPathComponent("coupond.json")
        try Data(#"{"database": {"url": "postgresql:///file"}, "engine": {"lease_seconds": 30}}"#.utf8).write(to: file)
        let configuration = try Configuration.load(
            path: file.path,
            environment: [
                "DATABASE_URL": "postgresql:///environment", "COUPOND_LEASE_SECONDS": "9",
                "CREDENTIALS_DIRECTORY": folder.path,
            ]
        )
        #expect(configuration.databaseURL == "postgresql:///environment")
        #expect(configuration.leaseSeconds == 9)
        #expect(configuration.claimKeyFile == folder.appendingPathComponent("claim-key").path)
        #expect(configuration.reportKeyFile == nil)
        #expect(throws: ConfigurationError.self) {
            try Configuration.load(path: nil, environment: ["COUPOND_LEASE_SECONDS": "soon"])
        }
    }
}

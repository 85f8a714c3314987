import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// The `coupond` binary as scripts and people use it: output, error text and exit codes.
@Suite struct CLITests {
    struct World {
        var db: TestDatabase
        var shop: Int64
        var group: Int64
        var coupon: Int64
        /// The login role the commands connect as; the database owner when `nil`.
        var user: String? = nil

        /// Schedules this world's coupon to its group through the command line.
        func schedule(_ channels: String, at time: String, json: Bool = false) throws -> ProcessResult {
            let arguments = [
                "schedule", "--shop", "\(shop)", "--group", "\(group)", "--coupon", "\(coupon)", "--channels", channels,
                "--at", time,
            ]
            return try run(arguments + (json ? ["--json"] : []))
        }

        /// Runs coupond against this test's database, from the repository root (templates/, sql/).
        func coupond(_ arguments: String...) throws -> ProcessResult {
            try run(arguments)
        }

        func run(_ arguments: [String]) throws -> ProcessResult {
            var environment: [String: String?] = db.environment.mapValues { $0 }
            environment["DATABASE_URL"] = .some(nil)
            environment["COUPOND_DATABASE_URL"] = .some(nil)
            if let user { environment["PGUSER"] = user }
            return try runProduct("coupond", arguments, environment: environment, currentDirectory: repositoryRoot)
        }
    }

    static func world(timeZone: String = "Asia/Kolkata", _ body: (World) throws -> Void) throws {
        try TestDatabase.with { db in
            let fixtures = Fixtures(db.connection)
            // 10:00 in Kolkata.
            try fixtures.setClock(utc(2026, 12, 1, 4, 30))
            let shop = try fixtures.shop(timeZone: timeZone)
            try body(
                World(
                    db: db,
                    shop: shop,
                    group: try fixtures.group(shop: shop, members: 5),
                    coupon: try fixtures.coupon(shop: shop)
                )
            )
        }
    }

    @Test func scheduleInShopTimePrintsTheNewSend() throws {
        try Self.world { world in
            let result = try world.schedule("email,sms", at: "2026-12-01 12:00", json: true)
            #expect(result.status == 0, "\(result.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            #expect(json?["status"] as? String == "not_started")
            #expect(json?["scheduled_at"] as? String == "2026-12-01T06:30:00Z")
            #expect(json?["email"] as? Bool == true)
            #expect(json?["sms"] as? Bool == true)
        }
    }

    @Test func aTimeGivenInAnotherZoneIsCheckedInTheShopsZone() throws {
        try Self.world { world in
            // 12:00 in Berlin is 16:30 in Kolkata: not the shop's hour.
            let berlin = try world.schedule("sms", at: "2026-12-01T12:00:00+01:00")
            #expect(berlin.status == 65)
            #expect(berlin.stderr.contains("sends_scheduled_on_the_hour"))
            #expect(berlin.stderr.contains("hint: Choose a whole hour"))
            // 08:30 UTC is 14:00 in Kolkata.
            let utcTime = try world.schedule("sms", at: "2026-12-01T08:30Z")
            #expect(utcTime.status == 0, "\(utcTime.stderr)")
            #expect(utcTime.stdout.contains("2026-12-01 14:00 +05:30"))
        }
    }

    @Test func refusalsNameTheRuleAndExit65() throws {
        try Self.world { world in
            let tooSoon = try world.schedule("email", at: "2026-12-01 11:00")
            #expect(tooSoon.status == 65)
            #expect(tooSoon.stderr.contains("less than 2 hours from now [sends_scheduled_2h_ahead]"))
            #expect(tooSoon.stderr.contains("The earliest time you can choose now is 2026-12-01 12:00 (Asia/Kolkata)"))
            #expect(tooSoon.stdout.isEmpty)

            try world.db.connection.execute(
                "UPDATE coupond.coupons SET status = 'unpublished' WHERE id = \(world.coupon)"
            )
            let unpublished = try world.schedule("email", at: "2026-12-01 13:00")
            #expect(unpublished.status == 65)
            #expect(unpublished.stderr.contains("sends_coupon_published"))
        }
    }

    @Test func badCommandLineInputExits64BeforeTouchingTheDatabase() throws {
        try Self.world { world in
            let channels = try world.coupond(
                "schedule",
                "--shop",
                "1",
                "--group",
                "1",
                "--coupon",
                "1",
                "--channels",
                "fax",
                "--at",
                "2026-12-01 12:00"
            )
            #expect(channels.status == 64)
            #expect(channels.stderr.contains("--channels must be email, sms or email,sms"))
            let time = try world.coupond(
                "schedule",
                "--shop",
                "1",
                "--group",
                "1",
                "--coupon",
                "1",
                "--channels",
                "sms",
                "--at",
                "tomorrow"
            )
            #expect(time.status == 64)
            #expect(time.stderr.contains("--at must be"))
            let number = try world.coupond("cancel", "forty-two")
            #expect(number.status == 64)
            let both = try world.coupond("status")
            #expect(both.status == 64)
        }
    }

    @Test(arguments: [
        "2026-12-01T10:00+25:00", "2026-12-01 10:00+24:00", "2026-12-01 10:00+99:00", "2026-12-01 10:00-25:00",
        "2026-12-01 10:00+14:60", "2026-13-45 10:00", "2026-02-30 10:00", "2026-12-01 24:00", "2026-12-01 10:60",
        "0000-12-01 10:00",
    ])
    func aTimeThatDoesNotExistOrAnOffsetNoZoneUsesIsAUsageErrorAndSchedulesNothing(time: String) throws {
        try Self.world { world in
            let result = try world.schedule("email", at: time)
            #expect(result.status == 64, "\(time): \(result.status) \(result.stderr)")
            #expect(result.stderr.contains("--at must be"), "\(result.stderr)")
            let count: Int = try world.db.connection.queryRow("SELECT count(*)::int AS n FROM coupond.sends")!.decode(
                "n"
            )
            #expect(count == 0)
        }
    }

    @Test(arguments: [
        "postgresql://coupond:s3cr3t-pw@db.example:notaport/coupons",
        "postgresql://coupond:s3cr3t-pw@db.example/coupons?sslmode=bogus",
        "postgresql://coupond:s3cr3t-pw@db.example/coupons?frobnicate=1",
        "postgresql://coupond:s3cr%33t-pw@[db.example/coupons",
        "host=db.example password=s3cr3t-pw port=99999",
        "host=db.example password='s3cr3t-pw' sslmode",
    ])
    func aMalformedDatabaseURLIsAConfigurationErrorThatNeverShowsItsPassword(url: String) throws {
        try Self.world { world in
            for command in [["status", "1"], ["run"]] {
                let result = try world.run(command + ["--database-url", url])
                #expect(result.status == 78, "\(command) \(url): \(result.status) \(result.stderr)")
                #expect(result.stderr.contains("--database-url is not a connection string"), "\(result.stderr)")
                #expect(!result.stderr.contains("s3cr3t") && !result.stdout.contains("s3cr3t"), "\(result.stderr)")
            }
        }
    }

    @Test func theCommandsRunAsThePlatformAndTheReadOnlyRoleAsREADMESays() throws {
        try Self.world { world in
            try world.db.connection.execute("UPDATE coupond.shops SET postal_address = '1 Main St, Pune 411001, India'")
            var platform = world
            platform.user = try world.db.loginRole(memberOf: "coupond_platform")
            var readonly = world
            readonly.user = try world.db.loginRole(memberOf: "coupond_readonly")
            let scheduled = try platform.schedule("email,sms", at: "2026-12-01 15:00", json: true)
            #expect(scheduled.status == 0, "\(scheduled.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(scheduled.stdout.utf8)) as? [String: Any]
            let id = try #require(json?["send_id"] as? Int)
            let preview = [
                "preview", "--shop", "\(world.shop)", "--group", "\(world.group)", "--coupon", "\(world.coupon)",
            ]
            for user in [platform, readonly] {
                let status = try user.coupond("status", "\(id)")
                #expect(status.status == 0, "\(user.user ?? ""): \(status.stderr)")
                let previewed = try user.run(preview)
                #expect(previewed.status == 0, "\(user.user ?? ""): \(previewed.stderr)")
            }
            let refused = try readonly.coupond("cancel", "\(id)")
            #expect(refused.status != 0, "the read-only role cancelled a send")
            let cancelled = try platform.coupond("cancel", "\(id)")
            #expect(cancelled.status == 0, "\(cancelled.stderr)")
        }
    }

    @Test func cancelAndStatusShowTheSend() throws {
        try Self.world { world in
            let scheduled = try world.schedule("email", at: "2026-12-01 15:00", json: true)
            let json = try JSONSerialization.jsonObject(with: Data(scheduled.stdout.utf8)) as? [String: Any]
            let id = try #require(json?["send_id"] as? Int)
            let cancelled = try world.coupond("cancel", "\(id)")
            #expect(cancelled.status == 0, "\(cancelled.stderr)")
            #expect(cancelled.stdout.contains("Cancelled"))
            let again = try world.coupond("cancel", "\(id)")
            #expect(again.status == 65)
            #expect(again.stderr.contains("already cancelled"))
            let missing = try world.coupond("cancel", "999999")
            #expect(missing.status == 66)

            let table = try world.coupond("status", "--group", "\(world.group)")
            #expect(table.status == 0)
            #expect(table.stdout.contains("SEND"))
            #expect(table.stdout.contains("\(id)"))
            #expect(table.stdout.contains("Cancelled"))
            let one = try world.coupond("status", "\(id)", "--json")
            let status = try JSONSerialization.jsonObject(with: Data(one.stdout.utf8)) as? [String: Any]
            #expect(status?["status"] as? String == "cancelled")
            let unknown = try world.coupond("status", "999999")
            #expect(unknown.status == 66)
        }
    }

    @Test func previewRendersEveryPartWithSegmentsAndFee() throws {
        try Self.world { world in
            let result = try runProduct(
                "coupond",
                [
                    "preview", "--shop", "\(world.shop)", "--group", "\(world.group)", "--coupon", "\(world.coupon)",
                    "--json",
                ],
                environment: world.db.environment.merging(["COUPOND_SMS_PRICE_PER_SEGMENT": "0.05"]) { $1 }
                    .mapValues { $0 },
                currentDirectory: repositoryRoot
            )
            #expect(result.status == 0, "\(result.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            #expect((json["email_subject"] as? String)?.contains("10% off") == true)
            #expect((json["email_html"] as? String)?.contains("CHECK YOUR COUPON") == true)
            #expect((json["email_text"] as? String)?.contains("utm_medium=email") == true)
            let sms = try #require(json["sms_text"] as? String)
            #expect(sms.contains("utm_medium=sms"))
            #expect(json["sms_encoding"] as? String == "GSM-7")
            let segments = try #require(json["sms_segments"] as? Int)
            #expect(segments == (sms.count <= 160 ? 1 : (sms.count + 152) / 153))
            #expect(json["sms_recipients"] as? Int == 5)
            #expect(json["currency"] as? String == "USD")
            let fee = try #require(json["sms_estimated_fee"] as? Double)
            #expect(abs(fee - 0.05 * Double(segments) * 5) < 0.000_1)
        }
    }

    @Test func anSMSOverSixteenHundredCharactersIsRefusedByPreviewAndSchedule() throws {
        try Self.world { world in
            try world.db.connection.execute(
                "UPDATE coupond.coupons SET title = repeat('Big sale ', 200) WHERE id = \(world.coupon)"
            )
            let preview = try world.coupond(
                "preview",
                "--shop",
                "\(world.shop)",
                "--group",
                "\(world.group)",
                "--coupon",
                "\(world.coupon)"
            )
            #expect(preview.status == 65)
            #expect(preview.stderr.contains("more than the 1600 providers take"), "\(preview.stderr)")
            #expect(preview.stdout.contains("== SMS =="), "the preview is still shown")
            let sms = try world.schedule("email,sms", at: "2026-12-01 12:00")
            #expect(sms.status == 65)
            #expect(sms.stderr.contains("sms.mustache"), "\(sms.stderr)")
            let sends = try world.db.connection.queryRow("SELECT count(*)::int AS n FROM coupond.sends")
            #expect(try sends?.decode("n", as: Int.self) == 0)
            let email = try world.schedule("email", at: "2026-12-01 12:00")
            #expect(email.status == 0, "\(email.stderr)")
        }
    }

    @Test func anUnreachableDatabaseExits69() throws {
        let result = try runProduct(
            "coupond",
            ["status", "1", "--database-url", "postgresql://127.0.0.1:1/none?connect_timeout=2"]
        )
        #expect(result.status == 69)
        #expect(result.stderr.contains("cannot connect to the database"))
    }

    @Test func aBadConfigurationFileExits78NamingTheSetting() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("coupond-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"sms": {"price_per_segment": "cheap"}}"#.utf8).write(to: file)
        let result = try runProduct("coupond", ["status", "1", "--config", file.path])
        #expect(result.status == 78)
        #expect(result.stderr.contains("sms.price_per_segment"))
        try Data(#"{"database": {"url": 5}}"#.utf8).write(to: file)
        let typed = try runProduct("coupond", ["status", "1", "--config", file.path])
        #expect(typed.status == 78)
        #expect(typed.stderr.contains("database.url"))
    }

    @Test func migrateTwiceIsANoOp() throws {
        try TestDatabase.with(migrated: false) { db in
            var environment: [String: String?] = db.environment.mapValues { $0 }
            environment["DATABASE_URL"] = .some(nil)
            let first = try runProduct(
                "coupond",
                ["migrate"],
                environment: environment,
                currentDirectory: repositoryRoot
            )
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stdout.contains("applied 0001_source_data.sql"))
            let second = try runProduct(
                "coupond",
                ["migrate"],
                environment: environment,
                currentDirectory: repositoryRoot
            )
            #expect(second.status == 0)
            #expect(second.stdout.contains("up to date"))
        }
    }

    @Test func helpExplainsEachCommand() throws {
        let help = try runProduct("coupond", ["--help"])
        #expect(help.status == 0)
        for command in ["migrate", "schedule", "cancel", "status", "preview"] {
            #expect(help.stdout.contains(command))
        }
        let schedule = try runProduct("coupond", ["schedule", "--help"])
        #expect(schedule.stdout.contains("on the hour"))
    }
}

@Suite struct RunConfigurationTests {
    @Test func theExampleConfigurationNamesTheMissingClaimKey() throws {
        let result = try runProduct(
            "coupond",
            ["run", "--config", repositoryRoot.appendingPathComponent("systemd/coupond.json").path],
            environment: [
                "CREDENTIALS_DIRECTORY": String?.none,
                "COUPOND_TEMPLATES": repositoryRoot.appendingPathComponent("templates").path,
            ],
            currentDirectory: repositoryRoot
        )
        #expect(result.status == 78)
        #expect(result.stderr.contains("links.claim_key_file is required"))
    }

    @Test func anUnknownSettingIsRefusedByName() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("coupond-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"engine": {"batch_sise": 10}}"#.utf8).write(to: file)
        let result = try runProduct("coupond", ["run", "--config", file.path])
        #expect(result.status == 78)
        #expect(result.stderr.contains("engine.batch_sise is not a known setting"))
    }

    /// A folder with a claim key, a gateway token and `c.json` made by `config` from the folder's path.
    static func configurationFolder(_ config: (String) -> String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("coupond-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data(repeating: 1, count: 32).write(to: folder.appendingPathComponent("key"))
        try Data("t".utf8).write(to: folder.appendingPathComponent("token"))
        try Data(config(folder.path).utf8).write(to: folder.appendingPathComponent("c.json"))
        return folder
    }

    @Test(arguments: ["ACtest", "AC0123456789abcdef0123456789abcdeg", "MG0123456789abcdef0123456789abcdef"])
    func aTwilioAccountSIDOutsideTwiliosPatternIsRefusedByName(sid: String) throws {
        let folder = try Self.configurationFolder { path in
            """
            {"sms": {"provider": "twilio", "url": "http://127.0.0.1:1", "from": "+15005550006",
                     "account_sid": "\(sid)", "credential_file": "\(path)/token"},
             "links": {"claim_key_file": "\(path)/key"}}
            """
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = try runProduct("coupond", ["run", "--config", folder.appendingPathComponent("c.json").path])
        #expect(result.status == 78)
        #expect(
            result.stderr.contains("sms.account_sid must be AC followed by 32 hexadecimal digits"),
            "\(result.stderr)"
        )
    }

    @Test func emailWithoutAPublicBaseURLIsRefusedForItsUnsubscribeLinks() throws {
        let folder = try Self.configurationFolder { path in
            """
            {"email": {"url": "http://127.0.0.1:1/e", "from": "a@b.example", "credential_file": "\(path)/token"},
             "links": {"claim_key_file": "\(path)/key"}}
            """
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = try runProduct("coupond", ["run", "--config", folder.appendingPathComponent("c.json").path])
        #expect(result.status == 78)
        #expect(
            result.stderr.contains("links.public_base_url is required with email: every email carries a one-click"),
            "\(result.stderr)"
        )
    }

    @Test func aDatabaseAtAnotherSchemaVersionIsRefused() throws {
        try TestDatabase.with(migrated: false) { db in
            let folder = try Self.configurationFolder { path in
                """
                {"email": {"url": "http://127.0.0.1:1/e", "from": "a@b.example", "credential_file": "\(path)/token"},
                 "links": {"claim_key_file": "\(path)/key", "report_key_file": "\(path)/key",
                           "public_base_url": "https://coupond.example"}}
                """
            }
            defer { try? FileManager.default.removeItem(at: folder) }
            var environment: [String: String?] = db.environment.mapValues { $0 }
            environment["DATABASE_URL"] = .some(nil)
            let result = try runProduct(
                "coupond",
                ["run", "--config", folder.appendingPathComponent("c.json").path],
                environment: environment,
                currentDirectory: repositoryRoot
            )
            #expect(result.status == 78)
            #expect(result.stderr.contains("run coupond migrate"))
        }
    }
}

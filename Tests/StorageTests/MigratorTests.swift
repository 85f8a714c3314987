import Dispatch
import Foundation
import Logging
import Postgres
import Storage
import TestSupport
import Testing

@Suite struct MigratorTests {
    @Test func runningTwiceAppliesNothingTheSecondTime() throws {
        try TestDatabase.with(migrated: false) { db in
            let migrator = try Migrator(directory: repositoryRoot.appendingPathComponent("sql"))
            let first = try migrator.migrate(on: db.connection, logger: quietLogger)
            #expect(first.count == migrator.migrations.count)
            #expect(first.count >= 3)
            let second = try migrator.migrate(on: db.connection, logger: quietLogger)
            #expect(second.isEmpty)
            #expect(try Migrator.appliedVersion(on: db.connection) == migrator.latestVersion)
        }
    }

    @Test func eachInstallationGetsItsOwnRandomIdOnce() throws {
        let migrator = try Migrator(directory: repositoryRoot.appendingPathComponent("sql"))
        var ids: [String] = []
        for _ in 0..<2 {
            try TestDatabase.with(migrated: false) { db in
                try migrator.migrate(on: db.connection, logger: quietLogger)
                let id = try Schema.installationID(db.connection)
                #expect(id.count == 16 && id.allSatisfy(\.isHexDigit), "\(id)")
                ids.append(id)
                let error = #expect(throws: PostgresError.self) {
                    try db.connection.execute("INSERT INTO coupond.installation (id) VALUES ('0123456789abcdef')")
                }
                #expect(error?.constraint == "installation_pkey")
            }
        }
        #expect(ids[0] != ids[1])
    }

    @Test func aFailingFileLeavesTheDatabaseAsItWasAndNamesTheLine() throws {
        try TestDatabase.with(migrated: false) { db in
            let migrator = try Migrator(migrations: [
                Migration(version: 1, fileName: "0001_ok.sql", sql: "CREATE TABLE first_table (id int);"),
                Migration(
                    version: 2,
                    fileName: "0002_broken.sql",
                    sql: "CREATE TABLE second_table (id int);\n\nSELECT * FROM\n  no_such_table;\n"
                ),
            ])
            let error = #expect(throws: MigrationError.self) {
                try migrator.migrate(on: db.connection, logger: quietLogger)
            }
            #expect(error?.fileName == "0002_broken.sql")
            #expect(error?.line == 4)
            #expect(error?.description.contains("0002_broken.sql:4") == true)
            #expect(try Migrator.appliedVersion(on: db.connection) == 1)
            let second = try db.connection.queryRow("SELECT to_regclass('second_table') IS NULL AS absent")
            #expect(try second?.decode("absent", as: Bool.self) == true)
        }
    }

    @Test func anEditedAppliedFileIsReported() throws {
        try TestDatabase.with(migrated: false) { db in
            let original = try Migrator(migrations: [Migration(version: 1, fileName: "0001_a.sql", sql: "SELECT 1;")])
            try original.migrate(on: db.connection, logger: quietLogger)
            let edited = try Migrator(migrations: [Migration(version: 1, fileName: "0001_a.sql", sql: "SELECT 2;")])
            let error = #expect(throws: MigrationError.self) {
                try edited.migrate(on: db.connection, logger: quietLogger)
            }
            #expect(error?.description.contains("changed after it was applied") == true)
        }
    }

    @Test func concurrentRunsApplyEachFileOnce() throws {
        try TestDatabase.with(migrated: false) { db in
            let migrator = try Migrator(directory: repositoryRoot.appendingPathComponent("sql"))
            let outcomes = Outcomes()
            let databaseName = db.name
            concurrently(4) { _ in
                do {
                    // Each thread owns its connection: libpq allows one thread per connection.
                    let connection = try TestDatabase.connect(to: databaseName)
                    defer { connection.close() }
                    let applied = try migrator.migrate(on: connection, logger: quietLogger)
                    outcomes.add("\(applied.count)")
                } catch {
                    outcomes.add("error: \(error)")
                }
            }
            let counts = outcomes.values.sorted()
            #expect(counts == ["0", "0", "0", "\(migrator.migrations.count)"])
        }
    }
}

/// Migrations applied one at a time over data, against all at once on an empty database.
@Suite struct MigrationEquivalenceTests {
    /// `pg_dump --schema-only` of the coupond schema, without the lines that differ between any two dumps.
    static func schemaDump(_ db: TestDatabase) throws -> String {
        let versions = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")
            .sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("dump-\(UUID().uuidString).sql")
        defer { try? FileManager.default.removeItem(at: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/lib/postgresql/\(versions.last ?? "")/bin/pg_dump")
        process.arguments = ["--schema-only", "--schema=coupond", "--file=" + output.path, db.name]
        process.environment = ProcessInfo.processInfo.environment.merging(db.environment) { $1 }
        process.environment?["PGDATABASE"] = db.name
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "pg_dump failed")
        let text = try String(contentsOf: output, encoding: .utf8)
        // Comments name the dumped database and versions; \restrict lines carry a random key.
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("--") && !$0.hasPrefix("\\restrict") && !$0.hasPrefix("\\unrestrict") }
            .joined(separator: "\n")
    }

    /// A shop with a finished send (recipients with claim token hashes, as version 4 wrote them) and one scheduled.
    static func insertVersion4Data(_ db: TestDatabase) throws {
        let fixtures = Fixtures(db.connection)
        try fixtures.setClock(utc(2026, 12, 1, 10))
        let shop = try fixtures.shop(postalAddress: nil)
        let group = try fixtures.group(shop: shop, members: 3)
        let coupon = try fixtures.coupon(shop: shop)
        for hour in [14, 15] {
            try db.connection.execute(
                """
                INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at)
                VALUES (\(shop), \(group), \(coupon), true, \(utc(2026, 12, 1, hour)))
                """
            )
        }
        try fixtures.setClock(utc(2026, 12, 1, 14))
        try db.connection.execute(
            """
            UPDATE coupond.sends SET status = 'sending', recipient_count = 3 WHERE scheduled_at = '2026-12-01 14:00Z';
            INSERT INTO coupond.send_recipients (send_id, customer_id, email, mobile, token_hash, email_status)
                SELECT s.id, m.customer_id, 'c' || m.customer_id || '@mail.example', NULL,
                       sha256(convert_to('token' || m.customer_id, 'UTF8')), 'sent'
                FROM coupond.sends s JOIN coupond.group_members m ON m.group_id = s.group_id
                WHERE s.status = 'sending';
            UPDATE coupond.sends SET status = 'done', sent_count = 3 WHERE status = 'sending';
            """
        )
    }

    @Test func migratingOneFileAtATimeOverDataGivesTheSchemaAFreshDatabaseGets() throws {
        let all = try Migrator(directory: repositoryRoot.appendingPathComponent("sql"))
        try TestDatabase.with(migrated: false) { stepwise in
            for migration in all.migrations {
                let upTo = try Migrator(migrations: all.migrations.filter { $0.version <= migration.version })
                #expect(
                    try upTo.migrate(on: stepwise.connection, logger: quietLogger).map(\.version) == [migration.version]
                )
                if migration.version == 4 { try Self.insertVersion4Data(stepwise) }
            }
            let kept = try stepwise.connection.queryRow(
                """
                SELECT (SELECT count(*) FROM coupond.sends)::int AS sends,
                       (SELECT count(*) FROM coupond.send_recipients WHERE email_status = 'sent')::int AS sent
                """
            )
            #expect(try kept?.decode("sends", as: Int.self) == 2)
            #expect(try kept?.decode("sent", as: Int.self) == 3)
            try TestDatabase.with(migrated: false) { fresh in
                try all.migrate(on: fresh.connection, logger: quietLogger)
                let stepwiseSchema = try Self.schemaDump(stepwise)
                let freshSchema = try Self.schemaDump(fresh)
                #expect(stepwiseSchema.count > 10_000, "the dump is too short to be the schema")
                #expect(stepwiseSchema == freshSchema)
            }
        }
    }
}

let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    return logger
}()

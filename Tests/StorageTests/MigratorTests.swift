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

let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    return logger
}()

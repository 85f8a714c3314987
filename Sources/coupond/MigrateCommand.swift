import ArgumentParser
import CoupondDaemon
import Foundation
import Postgres
import Storage

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Applies the numbered SQL files that the database does not have yet.",
        discussion: """
            Each file runs in its own transaction and is recorded in coupond.schema_migrations; running again is a \
            no-op. Concurrent runs wait for each other. A failed file leaves the database as it was and is named \
            with the line that failed.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("sql-dir"), help: ArgumentHelp("Folder of NNNN_name.sql files.", valueName: "path"))
    var sqlDirectory: String?

    func run() throws {
        try reportingFailures {
            let configuration = try global.loadConfiguration()
            let directory = sqlDirectory.map { URL(fileURLWithPath: $0) } ?? configuration.sqlDirectory
            let migrator: Migrator
            do {
                migrator = try Migrator(directory: directory)
            } catch let error as MigrationError {
                throw CommandFailure(.config, error.description)
            } catch {
                throw CommandFailure(.config, "cannot read migrations from \(directory.path): \(error)")
            }
            let connection = try global.connect(configuration)
            defer { connection.close() }
            let applied: [Migration]
            do {
                applied = try migrator.migrate(on: connection, logger: commandLogger(), roles: configuration.roles)
            } catch let error as MigrationError {
                throw CommandFailure(.software, error.description)
            }
            if applied.isEmpty {
                print("Database is up to date (version \(migrator.latestVersion)).")
            } else {
                for migration in applied { print("applied \(migration.fileName)") }
                print("Database is at version \(migrator.latestVersion).")
            }
        }
    }
}

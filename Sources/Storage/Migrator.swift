public import Foundation
public import Logging
public import Postgres

/// One numbered SQL file of `sql/`.
public struct Migration: Sendable, Equatable {
    /// The number the file name starts with.
    public var version: Int
    /// The file name, for example `0002_sends.sql`.
    public var fileName: String
    /// The file's SQL text.
    public var sql: String

    public init(version: Int, fileName: String, sql: String) {
        self.version = version
        self.fileName = fileName
        self.sql = sql
    }
}

/// A migration that the server refused, with the place in the file where it failed.
public struct MigrationError: Error, CustomStringConvertible {
    public var fileName: String
    /// 1-based line of the file, when the server reported a position.
    public var line: Int?
    public var underlying: any Error

    public var description: String {
        let place = line.map { "\(fileName):\($0)" } ?? fileName
        if let error = underlying as? PostgresError {
            var text = "migration \(place) failed: \(error.message)"
            if let hint = error.hint { text += " (hint: \(hint))" }
            if let context = error.context, line == nil { text += " [\(context)]" }
            return text
        }
        return "migration \(place) failed: \(underlying)"
    }
}

/// The roles `coupond migrate` creates and grants (README, "Roles"): the migrating user owns the schema.
public struct RoleNames: Sendable, Equatable {
    /// For `coupond run`: reads everything, works sends and their recipients, nothing more.
    public var daemon: String
    /// For other systems: inserts a send's own columns, cancels, claims, reads status.
    public var platform: String
    /// For reports and dashboards: reads everything.
    public var readonly: String

    public init(
        daemon: String = "coupond_daemon",
        platform: String = "coupond_platform",
        readonly: String = "coupond_readonly"
    ) {
        self.daemon = daemon
        self.platform = platform
        self.readonly = readonly
    }
}

/// Applies the numbered SQL files of a folder to a database, each once, in order.
///
/// Every file runs in its own transaction and is recorded in `coupond.schema_migrations` with its checksum in the
/// same transaction, so a failed file leaves the database as it was. A session advisory lock makes concurrent runs
/// (two hosts starting at once) wait for each other instead of racing.
public struct Migrator: Sendable {
    /// Key of the advisory lock that serialises migration runs ("coupond" in ASCII).
    static let lockKey: Int64 = 0x636F_7570_6F6E_64

    public let migrations: [Migration]

    /// Loads every `NNNN_name.sql` file of `directory`.
    ///
    /// - Throws: when the folder cannot be read, or two files share a number.
    public init(directory: URL) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        var migrations: [Migration] = []
        for name in names where name.hasSuffix(".sql") {
            guard let version = Int(name.prefix { $0.isNumber }), name.first?.isNumber == true else { continue }
            let sql = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            migrations.append(Migration(version: version, fileName: name, sql: sql))
        }
        try self.init(migrations: migrations)
    }

    public init(migrations: [Migration]) throws {
        let sorted = migrations.sorted { $0.version < $1.version }
        for (earlier, later) in zip(sorted, sorted.dropFirst()) where earlier.version == later.version {
            throw MigrationError(
                fileName: later.fileName,
                line: nil,
                underlying: StorageError("has the same number as \(earlier.fileName)")
            )
        }
        self.migrations = sorted
    }

    /// The latest version the files describe.
    public var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Applies every file not yet applied.
    ///
    /// - Returns: the files applied by this call, empty when the database was up to date.
    /// - Throws: ``MigrationError`` naming the file and line that failed, or when an applied file has changed.
    ///
    /// Then creates the roles that do not exist and grants each what it may do (`coupond.grant_roles`, from migration
    /// 0012 on), every time, so that objects of later migrations are granted too.
    @discardableResult
    public func migrate(
        on connection: PostgresConnection,
        logger: Logger,
        roles: RoleNames = RoleNames()
    ) throws -> [Migration] {
        try connection.execute("SELECT pg_advisory_lock(\(Self.lockKey))")
        defer { _ = try? connection.execute("SELECT pg_advisory_unlock(\(Self.lockKey))") }
        try connection.execute(
            """
            CREATE SCHEMA IF NOT EXISTS coupond;
            CREATE TABLE IF NOT EXISTS coupond.schema_migrations (
                version     integer PRIMARY KEY,
                file_name   text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        let applied = try appliedChecksums(on: connection)
        var done: [Migration] = []
        for migration in migrations {
            if let checksum = applied[migration.version] {
                guard checksum == Self.checksum(migration.sql) else {
                    throw MigrationError(
                        fileName: migration.fileName,
                        line: nil,
                        underlying: StorageError("was changed after it was applied; add a new file instead")
                    )
                }
                continue
            }
            do {
                try connection.transaction {
                    try connection.execute(PostgresQuery(unsafeSQL: migration.sql))
                    try connection.execute(
                        """
                        INSERT INTO coupond.schema_migrations (version, file_name, checksum)
                        VALUES (\(migration.version), \(migration.fileName), \(Self.checksum(migration.sql)))
                        """
                    )
                }
            } catch let error as PostgresError {
                throw MigrationError(
                    fileName: migration.fileName,
                    line: error.position.map { Self.line(ofCharacter: $0, in: migration.sql) },
                    underlying: error
                )
            }
            logger.info("applied migration", metadata: ["migration.file": "\(migration.fileName)"])
            done.append(migration)
        }
        try grant(roles, on: connection)
        return done
    }

    private func grant(_ roles: RoleNames, on connection: PostgresConnection) throws {
        let present = try connection.queryRow(
            "SELECT to_regprocedure('coupond.grant_roles(text, text, text)') IS NOT NULL AS present"
        )
        guard try present?.decode("present", as: Bool.self) == true else { return }
        do {
            try connection.execute(
                "SELECT coupond.grant_roles(\(roles.daemon), \(roles.platform), \(roles.readonly))"
            )
        } catch let error as PostgresError {
            var reason = error.message
            if error.sqlState?.code == "42501" {
                reason +=
                    "; run coupond migrate as a role with CREATEROLE, or create the roles "
                    + "\(roles.daemon), \(roles.platform) and \(roles.readonly) (NOLOGIN) first"
            }
            throw MigrationError(fileName: "roles", line: nil, underlying: StorageError(reason))
        }
    }

    /// The highest version recorded in the database, 0 for an empty database.
    public static func appliedVersion(on connection: PostgresConnection) throws -> Int {
        let exists = try connection.queryRow("SELECT to_regclass('coupond.schema_migrations') IS NOT NULL AS present")
        guard try exists?.decode("present", as: Bool.self) == true else { return 0 }
        let row = try connection.queryRow("SELECT coalesce(max(version), 0) AS version FROM coupond.schema_migrations")
        return try row?.decode("version", as: Int.self) ?? 0
    }

    private func appliedChecksums(on connection: PostgresConnection) throws -> [Int: String] {
        var checksums: [Int: String] = [:]
        for row in try connection.query("SELECT version, checksum FROM coupond.schema_migrations") {
            checksums[try row.decode("version")] = try row.decode("checksum", as: String.self)
        }
        return checksums
    }

    /// FNV-1a 64-bit of the file text: enough to notice an edited file, not a security measure.
    static func checksum(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    /// The 1-based line holding the 1-based character `position` (PostgreSQL counts characters, not bytes).
    static func line(ofCharacter position: Int, in text: String) -> Int {
        1 + text.prefix(max(0, position - 1)).reduce(0) { $1 == "\n" ? $0 + 1 : $0 }
    }
}

/// A failure of Coupond's storage layer that is not the server's.
public struct StorageError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

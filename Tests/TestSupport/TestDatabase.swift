public import Foundation
import Logging
public import Postgres
import Storage

/// The repository's root folder, found from this file's path.
public let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A database of its own for one test, created empty from the server that `DATABASE_URL` or the `PG*` variables
/// name, and dropped when the test ends.
public final class TestDatabase {
    public let name: String
    /// A connection to the test's database, owned by the test.
    public private(set) var connection: PostgresConnection
    /// The server's connection string, `nil` for `DATABASE_URL` or the `PG*` variables.
    private let server: String?

    private static let adminConnectionString = ProcessInfo.processInfo.environment["DATABASE_URL"]

    private init(name: String, connection: PostgresConnection, server: String?) {
        self.name = name
        self.connection = connection
        self.server = server
    }

    /// Opens another connection to the same database, for tests that need concurrent sessions.
    public func connect() throws -> PostgresConnection {
        try PostgresConnection(connectionString: server, database: name)
    }

    /// Replaces ``connection`` with a new one, after the server restarted.
    public func reconnect() throws {
        connection.close()
        connection = try connect()
    }

    /// Opens a connection to a test database by name, for threads that must own their connection.
    public static func connect(to name: String) throws -> PostgresConnection {
        try PostgresConnection(connectionString: adminConnectionString, database: name)
    }

    /// Environment variables that make libpq (and so a child `coupond` process) connect to this database.
    public var environment: [String: String] {
        var environment: [String: String] = [:]
        let parameters = connection.parameters
        let names = [
            "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "user": "PGUSER",
            "password": "PGPASSWORD", "dbname": "PGDATABASE", "sslmode": "PGSSLMODE",
        ]
        for (keyword, variable) in names {
            if let value = parameters[keyword] { environment[variable] = value }
        }
        return environment
    }

    /// A login role that is a member of `role` (one of the roles `coupond migrate` creates), for connecting with
    /// exactly that role's rights, as an operator would grant them. Roles belong to the server, so tests share it.
    public func loginRole(memberOf role: String) throws -> String {
        let login = role + "_login"
        try connection.execute(
            PostgresQuery(
                unsafeSQL: """
                    DO $$ BEGIN
                        CREATE ROLE \(login) LOGIN IN ROLE \(role);
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                    END $$
                    """
            )
        )
        return login
    }

    /// Applies the repository's `sql/` migrations.
    public func migrate() throws {
        let migrator = try Migrator(directory: repositoryRoot.appendingPathComponent("sql"))
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        try migrator.migrate(on: connection, logger: logger)
    }

    /// Creates a database, runs `body` with it and drops it, also when `body` throws.
    ///
    /// - Parameter migrated: whether to apply `sql/` first.
    /// - Parameter server: a connection string for another server than the environment's (a ``PrivateCluster``).
    public static func with<T>(
        migrated: Bool = true,
        server: String? = nil,
        _ body: (TestDatabase) throws -> T
    ) throws -> T {
        let server = server ?? adminConnectionString
        let admin = try PostgresConnection(connectionString: server)
        defer { admin.close() }
        let name = "coupond_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try admin.execute(PostgresQuery(unsafeSQL: "CREATE DATABASE " + admin.quoteIdentifier(name)))
        defer {
            _ = try? admin.execute(
                PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS " + admin.quoteIdentifier(name) + " WITH (FORCE)")
            )
        }
        let database = TestDatabase(
            name: name,
            connection: try PostgresConnection(connectionString: server, database: name),
            server: server
        )
        defer { database.connection.close() }
        if migrated { try database.migrate() }
        return try body(database)
    }
}

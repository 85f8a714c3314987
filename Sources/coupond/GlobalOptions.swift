import ArgumentParser
import CoupondDaemon
import Foundation
import Logging
import Postgres

/// Options every command that talks to the database takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Configuration file (JSON).", valueName: "path"))
    var config: String?

    @Option(
        name: .customLong("database-url"),
        help: ArgumentHelp("libpq connection string or URI; overrides the file and DATABASE_URL.", valueName: "url")
    )
    var databaseURL: String?

    /// Loads the configuration file (when given) with environment overrides.
    func loadConfiguration() throws -> Configuration {
        try Configuration.load(path: config, environment: ProcessInfo.processInfo.environment)
    }

    /// Opens a connection from the first source that names a database, else from the PG* environment.
    func connect(_ configuration: Configuration) throws -> PostgresConnection {
        let url = databaseURL ?? configuration.databaseURL
        if let url, let problem = ConnectionString.problem(url) {
            throw CommandFailure(
                .config,
                "\(databaseURL == nil ? "database.url" : "--database-url") is not a connection string libpq can use: "
                    + problem
            )
        }
        do {
            return try PostgresConnection(connectionString: url)
        } catch let error as PostgresError {
            throw CommandFailure(.unavailable, "cannot connect to the database: \(error.message)")
        }
    }
}

/// A logger for command-line use: warnings and errors to standard error.
func commandLogger() -> Logger {
    var logger = Logger(label: "coupond")
    logger.logLevel = .warning
    return logger
}

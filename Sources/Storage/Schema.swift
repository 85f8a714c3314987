public import Postgres

/// The schema this build of Coupond works with.
public enum Schema {
    /// The highest `sql/` migration this binary's SQL relies on. `coupond run` refuses a database at another version.
    public static let expectedVersion = 22

    /// This installation's random id (`coupond.installation`, made by migration 0008), which idempotency keys and
    /// report-link signatures carry.
    public static func installationID(_ connection: PostgresConnection) throws -> String {
        guard let id: String = try connection.queryRow("SELECT id FROM coupond.installation")?.decode("id") else {
            throw StorageError("coupond.installation is empty: run coupond migrate")
        }
        return id
    }
}

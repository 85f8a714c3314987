internal import CLibPQ
import Foundation

/// A notification received on a channel the connection listens to.
public struct PostgresNotification: Sendable, Equatable {
    /// The channel name.
    public var channel: String
    /// The payload given to `NOTIFY` or `pg_notify`.
    public var payload: String
    /// Process id of the notifying server backend.
    public var senderPID: Int32
}

/// A connection to a PostgreSQL server through libpq.
///
/// Statements run synchronously on the calling thread; call them from a thread that may block, never from Swift's
/// cooperative pool.
///
/// ### Threading
/// libpq allows one thread at a time per connection. The type is not `Sendable`: one owner (a worker thread, a
/// command) creates it, uses it and closes it.
///
/// ### Ownership
/// The connection owns its `PGconn`. ``close()`` releases it; `deinit` closes a connection left open so that a
/// thrown error never leaks a server session.
///
/// Related libpq documentation: https://www.postgresql.org/docs/current/libpq-connect.html
public final class PostgresConnection {
    private var handle: OpaquePointer?

    /// Connects with a libpq connection string or URI, or with the `PG*` environment variables when it is `nil`,
    /// as `psql` does.
    ///
    /// The string is handed to libpq as `dbname` with `expand_dbname=1`, so libpq parses it; nothing is
    /// concatenated. When `$CREDENTIALS_DIRECTORY/pgpass` exists (systemd `LoadCredential=`) and neither the string
    /// nor `PGPASSFILE` names a password file, it is used as the password file.
    ///
    /// - Parameters:
    ///   - connectionString: `postgresql://…` or `key=value …`, or `nil` for the environment.
    ///   - database: a database name that overrides the one the string or environment names.
    ///   - applicationName: reported in `pg_stat_activity` unless the string or `PGAPPNAME` sets one.
    ///   - safeguards: timeouts and keepalives for a long-lived connection; the string's own keywords win.
    /// - Throws: ``PostgresError`` with code `.connectionFailed`.
    public init(
        connectionString: String? = nil,
        database: String? = nil,
        applicationName: String = "coupond",
        safeguards: ConnectionSafeguards? = nil
    ) throws {
        var parameters: [(String, String)] = [
            ("fallback_application_name", applicationName),
            ("client_encoding", "UTF8"),
        ]
        parameters += safeguards?.keywords ?? []
        let environment = ProcessInfo.processInfo.environment
        if environment["PGCONNECT_TIMEOUT"] == nil {
            parameters.append(("connect_timeout", "10"))
        }
        if environment["PGPASSFILE"] == nil, let credentials = environment["CREDENTIALS_DIRECTORY"] {
            let passfile = credentials + "/pgpass"
            if FileManager.default.fileExists(atPath: passfile) { parameters.append(("passfile", passfile)) }
        }
        // libpq applies later keywords over earlier ones, so the caller's string comes last and wins.
        if let connectionString { parameters.append(("dbname", connectionString)) }
        // > Subsequent occurrences of dbname are treated as plain database names.
        if let database { parameters.append(("dbname", database)) }

        let connection = withCStringArray(parameters.map(\.0), nullTerminated: true) { keywords in
            withCStringArray(parameters.map(\.1), nullTerminated: true) { values in
                PQconnectdbParams(keywords, values, connectionString == nil ? 0 : 1)
            }
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            var error = PostgresError(code: .connectionFailed, connection: connection)
            // libpq can echo a malformed string whole, password included.
            if let connectionString { error.message = ConnectionString.redact(error.message, in: connectionString) }
            // > Note that when PQconnectdbParams returns a non-null pointer, you must call PQfinish when you are
            // > finished with it, in order to dispose of the structure and any associated memory blocks. This must
            // > be done even if the connection attempt fails or is abandoned.
            PQfinish(connection)
            throw error
        }
        handle = connection
        try execute(
            "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; SET client_min_messages = 'warning'"
        )
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Closes the connection. Calling it twice is harmless.
    public func close() {
        if let handle { PQfinish(handle) }
        handle = nil
    }

    /// Whether the connection is open and healthy (libpq: `PQstatus == CONNECTION_OK`).
    public var isConnected: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// The server backend's process id, as `pg_backend_pid()` reports it.
    public var backendPID: Int32 {
        PQbackendPID(liveHandle)
    }

    /// The settings libpq used for this connection (libpq: `PQconninfo`), for example `host`, `port`, `user` and
    /// `dbname`. Empty settings are left out.
    public var parameters: [String: String] {
        guard let options = PQconninfo(liveHandle) else { return [:] }
        defer { PQconninfoFree(options) }
        var result: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val, value.pointee != 0 {
                result[String(cString: keyword)] = String(cString: value)
            }
            option += 1
        }
        return result
    }

    var liveHandle: OpaquePointer {
        guard let handle else { preconditionFailure("PostgresConnection used after close()") }
        return handle
    }

    /// Runs one statement with its parameters and returns the rows it produced.
    ///
    /// - Throws: ``PostgresError`` with code `.queryFailed` when the server refuses it, `.connectionLost` when the
    ///   connection broke.
    @discardableResult
    public func query(_ query: PostgresQuery) throws -> [PostgresRow] {
        try run(query).rows
    }

    /// Runs one statement and returns the number of rows it affected (libpq: `PQcmdTuples`).
    @discardableResult
    public func execute(_ query: PostgresQuery) throws -> Int {
        try run(query).affectedRows
    }

    /// Runs one statement and returns its single row, or `nil` when it produced none.
    public func queryRow(_ query: PostgresQuery) throws -> PostgresRow? {
        try run(query).rows.first
    }

    struct Outcome {
        var rows: [PostgresRow]
        var affectedRows: Int
    }

    private func run(_ query: PostgresQuery) throws -> Outcome {
        let handle = liveHandle
        let result: OpaquePointer?
        if query.parameters.isEmpty {
            // PQexec allows several statements separated by semicolons, which migration scripts need.
            result = PQexec(handle, query.sql)
        } else {
            result = withCStringArray(query.parameters) { values in
                PQexecParams(handle, query.sql, Int32(values.count), nil, values, nil, nil, 0)
            }
        }
        return try consume(result)
    }

    /// Checks a result, copies its rows into Swift values and clears it.
    private func consume(_ result: OpaquePointer?) throws -> Outcome {
        guard let result else { throw PostgresError(code: .connectionLost, connection: handle) }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            return Outcome(rows: Self.rows(of: result), affectedRows: Int(String(cString: PQcmdTuples(result))) ?? 0)
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return Outcome(rows: [], affectedRows: Int(String(cString: PQcmdTuples(result))) ?? 0)
        default:
            let lost = handle.map { PQstatus($0) != CONNECTION_OK } ?? true
            throw PostgresError(code: lost ? .connectionLost : .queryFailed, result: result, connection: handle)
        }
    }

    private static func rows(of result: OpaquePointer) -> [PostgresRow] {
        let columnCount = PQnfields(result)
        let rowCount = PQntuples(result)
        let columns = PostgresColumns(names: (0..<columnCount).map { String(cString: PQfname(result, $0)) })
        var rows = [PostgresRow]()
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            let values: [String?] = (0..<columnCount).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            }
            rows.append(PostgresRow(columns: columns, values: values))
        }
        return rows
    }

    /// Runs `body` in a transaction: `COMMIT` when it returns, `ROLLBACK` when it throws.
    ///
    /// - Parameter isolation: for example `"SERIALIZABLE"`; the server default when `nil`.
    @discardableResult
    public func transaction<T>(isolation: String? = nil, _ body: () throws -> T) throws -> T {
        if let isolation {
            try execute(PostgresQuery(unsafeSQL: "BEGIN ISOLATION LEVEL " + isolation))
        } else {
            try execute("BEGIN")
        }
        let value: T
        do {
            value = try body()
        } catch {
            // A broken connection cannot roll back; the server does so when the session ends.
            if isConnected { _ = try? execute("ROLLBACK") }
            throw error
        }
        try execute("COMMIT")
        return value
    }

    /// Quotes an identifier for SQL text (libpq: `PQescapeIdentifier`).
    public func quoteIdentifier(_ identifier: String) -> String {
        let handle = liveHandle
        guard let escaped = PQescapeIdentifier(handle, identifier, identifier.utf8.count) else {
            preconditionFailure("PQescapeIdentifier failed: \(String(cString: PQerrorMessage(handle)))")
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }

    // MARK: - COPY

    /// Streams rows into a table with `COPY … FROM STDIN` in text format.
    ///
    /// - Parameters:
    ///   - statement: a `COPY table (columns) FROM STDIN` statement.
    ///   - rows: each row's values in the column order of the statement; `nil` is SQL NULL.
    /// - Returns: the number of rows copied.
    /// - Throws: ``PostgresError`` with code `.copyFailed`, or `.queryFailed` when the server rejects a row (no row
    ///   of the COPY is then stored).
    @discardableResult
    public func copyIn(_ statement: PostgresQuery, rows: some Sequence<[String?]>) throws -> Int {
        let handle = liveHandle
        guard let start = PQexec(handle, statement.sql) else {
            throw PostgresError(code: .connectionLost, connection: handle)
        }
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            defer { PQclear(start) }
            throw PostgresError(code: .copyFailed, result: start, connection: handle)
        }
        PQclear(start)

        var buffer = [UInt8]()
        buffer.reserveCapacity(64 * 1024)
        func flush() throws {
            guard !buffer.isEmpty else { return }
            let status = buffer.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { PQputCopyData(handle, $0.baseAddress, Int32($0.count)) }
            }
            guard status == 1 else { throw PostgresError(code: .copyFailed, connection: handle) }
            buffer.removeAll(keepingCapacity: true)
        }
        for row in rows {
            CopyText.append(row, to: &buffer)
            if buffer.count >= 60 * 1024 { try flush() }
        }
        try flush()
        guard PQputCopyEnd(handle, nil) == 1 else { throw PostgresError(code: .copyFailed, connection: handle) }
        return try finishCopy()
    }

    /// Streams the rows of `COPY … TO STDOUT` (text format) to `body`, one at a time, without holding them all.
    ///
    /// - Returns: the number of rows copied.
    @discardableResult
    public func copyOut(_ statement: PostgresQuery, _ body: ([String?]) throws -> Void) throws -> Int {
        let handle = liveHandle
        guard let start = PQexec(handle, statement.sql) else {
            throw PostgresError(code: .connectionLost, connection: handle)
        }
        guard PQresultStatus(start) == PGRES_COPY_OUT else {
            defer { PQclear(start) }
            throw PostgresError(code: .copyFailed, result: start, connection: handle)
        }
        PQclear(start)
        var bodyError: (any Error)?
        while true {
            var line: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(handle, &line, 0)
            if length == -1 { break }
            guard length >= 0, let line else { throw PostgresError(code: .copyFailed, connection: handle) }
            defer { PQfreemem(line) }
            // Keep draining after a failing body: libpq needs the COPY finished before the next statement.
            if bodyError == nil {
                let bytes = UnsafeRawBufferPointer(start: line, count: Int(length))
                do { try body(CopyText.parse(bytes)) } catch { bodyError = error }
            }
        }
        let count = try finishCopy()
        if let bodyError { throw bodyError }
        return count
    }

    private func finishCopy() throws -> Int {
        var count = 0
        var failure: PostgresError?
        while let result = PQgetResult(handle) {
            defer { PQclear(result) }
            if PQresultStatus(result) == PGRES_COMMAND_OK {
                count = Int(String(cString: PQcmdTuples(result))) ?? 0
            } else if failure == nil {
                failure = PostgresError(code: .queryFailed, result: result, connection: handle)
            }
        }
        if let failure { throw failure }
        return count
    }

    // MARK: - LISTEN / NOTIFY

    /// Starts listening on a channel (SQL: `LISTEN`).
    public func listen(_ channel: String) throws {
        try execute(PostgresQuery(unsafeSQL: "LISTEN " + quoteIdentifier(channel)))
    }

    /// Stops listening on a channel (SQL: `UNLISTEN`).
    public func unlisten(_ channel: String) throws {
        try execute(PostgresQuery(unsafeSQL: "UNLISTEN " + quoteIdentifier(channel)))
    }

    /// Sends a notification (SQL: `pg_notify`).
    public func notify(_ channel: String, payload: String = "") throws {
        try execute("SELECT pg_notify(\(channel), \(payload))")
    }

    /// Waits up to `timeout` seconds for notifications and returns those that arrived (possibly none).
    ///
    /// - Throws: ``PostgresError`` with code `.connectionLost` when the connection broke.
    public func waitForNotifications(timeout: Double) throws -> [PostgresNotification] {
        let handle = liveHandle
        var received = drainNotifications()
        if !received.isEmpty { return received }
        let socket = PQsocket(handle)
        guard socket >= 0 else { throw PostgresError(code: .connectionLost, connection: handle) }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(max(0, min(timeout, 86_400)) * 1000)
        let ready = poll(&descriptor, 1, milliseconds)
        if ready < 0 && errno != EINTR {
            throw PostgresError(code: .socketFailed, message: "poll failed: errno \(errno)")
        }
        if ready > 0 {
            guard PQconsumeInput(handle) == 1 else { throw PostgresError(code: .connectionLost, connection: handle) }
            received = drainNotifications()
        }
        return received
    }

    private func drainNotifications() -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notice = PQnotifies(handle) {
            received.append(
                PostgresNotification(
                    channel: String(cString: notice.pointee.relname),
                    payload: String(cString: notice.pointee.extra),
                    senderPID: notice.pointee.be_pid
                )
            )
            PQfreemem(notice)
        }
        return received
    }
}

@available(*, unavailable)
extension PostgresConnection: Sendable {}

internal import CLibPQ

/// A five-character PostgreSQL error code (SQLSTATE).
///
/// Match a whole class with its two-character prefix: `case "23" = error.sqlState` matches every integrity
/// constraint violation.
///
/// Related PostgreSQL documentation: https://www.postgresql.org/docs/current/errcodes-appendix.html
public struct SQLState: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The code, for example `23505`.
    public let code: String

    public init(_ code: String) { self.code = code }
    public init(stringLiteral value: String) { self.code = value }

    public var description: String { code }

    /// The two-character class, for example `23` for integrity constraint violations.
    public var errorClass: String { String(code.prefix(2)) }

    public static let uniqueViolation: SQLState = "23505"
    public static let foreignKeyViolation: SQLState = "23503"
    public static let checkViolation: SQLState = "23514"
    public static let notNullViolation: SQLState = "23502"
    public static let serializationFailure: SQLState = "40001"
    public static let deadlockDetected: SQLState = "40P01"
    public static let adminShutdown: SQLState = "57P01"
    public static let objectNotInPrerequisiteState: SQLState = "55000"
    public static let noDataFound: SQLState = "P0002"
    public static let invalidTextRepresentation: SQLState = "22P02"
    public static let invalidDatetimeFormat: SQLState = "22007"
    public static let queryCanceled: SQLState = "57014"
    public static let lockNotAvailable: SQLState = "55P03"

    /// Matches a state against a full code or a two-character class.
    public static func ~= (pattern: SQLState, value: SQLState?) -> Bool {
        guard let value else { return false }
        if pattern.code.count == 2 { return value.errorClass == pattern.code }
        return pattern.code == value.code
    }
}

/// An error reported by libpq or by the PostgreSQL server.
///
/// `description` names the failure and the server's primary message but leaves out `detail`, which can echo row
/// values; `debugDescription` has everything.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of operation failed.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The connection could not be established (libpq: `CONNECTION_BAD` after connecting).
        public static let connectionFailed = Code("connectionFailed")
        /// The server refused a statement (libpq: `PGRES_FATAL_ERROR`).
        public static let queryFailed = Code("queryFailed")
        /// The connection broke while a statement was in progress.
        public static let connectionLost = Code("connectionLost")
        /// A COPY could not be started, fed or finished.
        public static let copyFailed = Code("copyFailed")
        /// A result value could not be decoded into the requested Swift type.
        public static let decodingFailed = Code("decodingFailed")
        /// Waiting for a notification failed at the socket level.
        public static let socketFailed = Code("socketFailed")
    }

    /// Whether trying the same work again later can succeed: the connection broke, or the server refused for a
    /// passing reason (shutting down or starting, a cancel or statement timeout, a deadlock or serialization
    /// failure, a read-only standby during a switchover, out of memory, disk or connections, an I/O error). Errors
    /// about the statement or the data (syntax, constraints, types) are not: they recur however often one retries.
    public var isTransient: Bool {
        if code == .connectionFailed || code == .connectionLost || code == .socketFailed { return true }
        switch sqlState {
        case "08", "40", "53", "57", "58", .lockNotAvailable, "25006": return true
        default: return false
        }
    }

    public var code: Code
    /// libpq: `PG_DIAG_SQLSTATE`.
    public var sqlState: SQLState?
    /// libpq: `PG_DIAG_MESSAGE_PRIMARY`, or libpq's own message for client-side failures.
    public var message: String
    /// libpq: `PG_DIAG_MESSAGE_DETAIL`.
    public var detail: String?
    /// libpq: `PG_DIAG_MESSAGE_HINT`.
    public var hint: String?
    /// libpq: `PG_DIAG_CONSTRAINT_NAME`.
    public var constraint: String?
    /// libpq: `PG_DIAG_CONTEXT`, where in a function or script the error arose.
    public var context: String?
    /// libpq: `PG_DIAG_STATEMENT_POSITION`, 1-based character offset into the statement.
    public var position: Int?

    public init(
        code: Code,
        message: String,
        sqlState: SQLState? = nil,
        detail: String? = nil,
        hint: String? = nil,
        constraint: String? = nil,
        context: String? = nil,
        position: Int? = nil
    ) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.context = context
        self.position = position
    }

    public var description: String {
        var text = "PostgresError.\(code)"
        if let sqlState { text += " [\(sqlState)]" }
        if let constraint { text += " (\(constraint))" }
        return text + ": " + message
    }

    public var debugDescription: String {
        var text = description
        if let detail { text += "\nDETAIL: \(detail)" }
        if let hint { text += "\nHINT: \(hint)" }
        if let context { text += "\nCONTEXT: \(context)" }
        if let position { text += "\nPOSITION: \(position)" }
        return text
    }

    /// Builds an error from a failed result's diagnostic fields.
    init(code: Code, result: OpaquePointer, connection: OpaquePointer?) {
        func field(_ name: Int32) -> String? {
            guard let value = PQresultErrorField(result, name) else { return nil }
            return String(cString: value)
        }
        let fallback = connection.flatMap { PQerrorMessage($0) }.map { String(cString: $0) } ?? "unknown error"
        self.init(
            code: code,
            message: field(Int32(UInt8(ascii: "M"))) ?? fallback.trimmingTrailingNewlines(),
            sqlState: field(Int32(UInt8(ascii: "C"))).map { SQLState($0) },
            detail: field(Int32(UInt8(ascii: "D"))),
            hint: field(Int32(UInt8(ascii: "H"))),
            constraint: field(Int32(UInt8(ascii: "n"))),
            context: field(Int32(UInt8(ascii: "W"))),
            position: field(Int32(UInt8(ascii: "P"))).flatMap { Int($0) }
        )
    }

    /// Builds an error from libpq's last connection-level message.
    init(code: Code, connection: OpaquePointer?) {
        let message = connection.flatMap { PQerrorMessage($0) }.map { String(cString: $0) } ?? "out of memory"
        self.init(code: code, message: message.trimmingTrailingNewlines())
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var text = Substring(self)
        while let last = text.last, last.isNewline || last == " " { text = text.dropLast() }
        return String(text)
    }
}

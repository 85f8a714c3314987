public import Foundation

/// A value that can be read from a result column in PostgreSQL's text format.
public protocol PostgresDecodable: Sendable {
    /// Returns `nil` when `postgresText` is not a valid text form of this type.
    init?(postgresText: String)
}

/// One result row, copied out of libpq's result so that it outlives it.
public struct PostgresRow: Sendable {
    /// The result's column names, shared by every row of one result.
    public let columns: PostgresColumns
    /// The values in text format; `nil` is SQL NULL.
    public let values: [String?]

    /// The raw text of a column, or `nil` for SQL NULL.
    ///
    /// A column name the result does not have is a programmer error and traps.
    public subscript(_ name: String) -> String? {
        guard let index = columns.index(of: name) else {
            preconditionFailure("result has no column \(name); columns: \(columns.names)")
        }
        return values[index]
    }

    /// Decodes a non-null column.
    ///
    /// - Throws: ``PostgresError`` with code `.decodingFailed` when the value is NULL or not a `T`.
    public func decode<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        guard let value = try decode(name, as: T?.self) else {
            throw PostgresError(code: .decodingFailed, message: "column \(name) is NULL, expected \(T.self)")
        }
        return value
    }

    /// Decodes a column that may be NULL.
    ///
    /// - Throws: ``PostgresError`` with code `.decodingFailed` when the value is not a `T`.
    public func decode<T: PostgresDecodable>(_ name: String, as type: T?.Type) throws -> T? {
        guard let text = self[name] else { return nil }
        guard let value = T(postgresText: text) else {
            throw PostgresError(code: .decodingFailed, message: "column \(name) is not a valid \(T.self)")
        }
        return value
    }
}

/// Column names of one result, with a name-to-index lookup built once.
public final class PostgresColumns: Sendable {
    public let names: [String]
    private let indexes: [String: Int]

    init(names: [String]) {
        self.names = names
        var indexes: [String: Int] = [:]
        for (index, name) in names.enumerated() where indexes[name] == nil { indexes[name] = index }
        self.indexes = indexes
    }

    public func index(of name: String) -> Int? { indexes[name] }
}

extension String: PostgresDecodable {
    public init?(postgresText: String) { self = postgresText }
}

extension Int: PostgresDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int64: PostgresDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int32: PostgresDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Double: PostgresDecodable {
    public init?(postgresText: String) {
        switch postgresText {
        case "NaN": self = .nan
        case "Infinity": self = .infinity
        case "-Infinity": self = -.infinity
        default: self.init(postgresText)
        }
    }
}

extension Decimal: PostgresDecodable {
    public init?(postgresText: String) {
        self.init(string: postgresText, locale: Locale(identifier: "en_US_POSIX"))
    }
}

extension Decimal: PostgresEncodable {
    public var postgresText: String? { NSDecimalNumber(decimal: self).description(withLocale: nil) }
}

extension Bool: PostgresDecodable {
    public init?(postgresText: String) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: return nil
        }
    }
}

extension UUID: PostgresDecodable {
    public init?(postgresText: String) { self.init(uuidString: postgresText) }
}

extension Date: PostgresDecodable {
    public init?(postgresText: String) {
        guard let date = PostgresTimestamp.parse(postgresText) else { return nil }
        self = date
    }
}

extension Data: PostgresDecodable {
    /// Reads `bytea` in hex format, the server default since PostgreSQL 9.0.
    public init?(postgresText: String) {
        guard postgresText.hasPrefix("\\x") else { return nil }
        let hex = Array(postgresText.utf8.dropFirst(2))
        guard hex.count % 2 == 0 else { return nil }
        func nibble(_ byte: UInt8) -> UInt8? {
            switch byte {
            case 48...57: return byte - 48
            case 97...102: return byte - 87
            case 65...70: return byte - 55
            default: return nil
            }
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(hex.count / 2)
        var index = 0
        while index < hex.count {
            guard let high = nibble(hex[index]), let low = nibble(hex[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.init(bytes)
    }
}

extension PostgresDecodable where Self: RawRepresentable, RawValue == String {
    /// An enum whose raw values are the words a column holds decodes by its raw value.
    public init?(postgresText: String) { self.init(rawValue: postgresText) }
}

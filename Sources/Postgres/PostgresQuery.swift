public import Foundation

/// A value that can be sent to PostgreSQL as a statement parameter, in PostgreSQL's text format.
public protocol PostgresEncodable: Sendable {
    /// The parameter's text form, or `nil` for SQL NULL.
    var postgresText: String? { get }
}

/// A SQL statement whose interpolated values become `$n` parameters, never part of the SQL text.
///
/// ```swift
/// let rows = try connection.query("SELECT name FROM coupond.shops WHERE id = \(shopID)")
/// ```
///
/// Use ``init(unsafeSQL:parameters:)`` only for SQL that holds no outside input.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation {
    /// The statement text with `$1`, `$2`, … placeholders.
    public private(set) var sql: String
    /// The parameters' text forms; `nil` is SQL NULL.
    public private(set) var parameters: [String?]

    /// Wraps raw SQL text. The caller vouches that `unsafeSQL` contains no outside input.
    public init(unsafeSQL: String, parameters: [String?] = []) {
        self.sql = unsafeSQL
        self.parameters = parameters
    }

    public init(stringLiteral value: String) {
        self.init(unsafeSQL: value)
    }

    public init(stringInterpolation: StringInterpolation) {
        self.init(unsafeSQL: stringInterpolation.sql, parameters: stringInterpolation.parameters)
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            parameters.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        /// Binds `value` as the next parameter.
        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            parameters.append(value.postgresText)
            sql += "$\(parameters.count)"
        }

        /// Binds an optional value; `nil` is SQL NULL.
        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?) {
            parameters.append(value?.postgresText ?? nil)
            sql += "$\(parameters.count)"
        }

        /// Splices another query, renumbering its parameters after the ones already bound.
        public mutating func appendInterpolation(subquery: PostgresQuery) {
            let offset = parameters.count
            var sql = ""
            var digits = ""
            var afterDollar = false
            func flushPlaceholder() {
                if afterDollar { sql += "$" + (Int(digits).map { String($0 + offset) } ?? digits) }
                afterDollar = false
                digits = ""
            }
            for character in subquery.sql {
                if afterDollar, character.isASCII, character.isNumber {
                    digits.append(character)
                    continue
                }
                flushPlaceholder()
                if character == "$" { afterDollar = true } else { sql.append(character) }
            }
            flushPlaceholder()
            self.sql += sql
            parameters.append(contentsOf: subquery.parameters)
        }

        /// Splices SQL text, such as an identifier quoted by ``PostgresConnection/quoteIdentifier(_:)``.
        public mutating func appendInterpolation(unsafeSQL text: String) {
            sql += text
        }
    }
}

extension String: PostgresEncodable {
    public var postgresText: String? { self }
}

extension Substring: PostgresEncodable {
    public var postgresText: String? { String(self) }
}

extension Int: PostgresEncodable {
    public var postgresText: String? { String(self) }
}

extension Int64: PostgresEncodable {
    public var postgresText: String? { String(self) }
}

extension Int32: PostgresEncodable {
    public var postgresText: String? { String(self) }
}

extension Double: PostgresEncodable {
    public var postgresText: String? {
        if isNaN { return "NaN" }
        if isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return "\(self)"
    }
}

extension Bool: PostgresEncodable {
    public var postgresText: String? { self ? "t" : "f" }
}

extension UUID: PostgresEncodable {
    public var postgresText: String? { uuidString.lowercased() }
}

extension Date: PostgresEncodable {
    /// ISO 8601 in UTC with microseconds, which `timestamptz` reads exactly.
    public var postgresText: String? { PostgresTimestamp.format(self) }
}

extension Data: PostgresEncodable {
    /// `bytea` hex format.
    public var postgresText: String? {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "x")]
        text.reserveCapacity(2 + count * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

extension Array: PostgresEncodable where Element: PostgresEncodable {
    /// A one-dimensional array literal, each element quoted.
    ///
    /// Written into one byte buffer, walking the array by index: this generic code runs unspecialised from other
    /// modules, where `enumerated()` and a quoted `String` per element cost over a thousand instructions each, and a
    /// batch's outcomes go to the server as a dozen arrays of hundreds of elements.
    public var postgresText: String? {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        bytes.reserveCapacity(2 + count * 16)
        for index in 0..<count {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            guard var text = self[index].postgresText else {
                bytes.append(contentsOf: "NULL".utf8)
                continue
            }
            bytes.append(quote)
            text.withUTF8 { utf8 in
                guard utf8.contains(where: { $0 == quote || $0 == backslash }) else {
                    bytes.append(contentsOf: utf8)
                    return
                }
                for byte in utf8 {
                    if byte == quote || byte == backslash { bytes.append(backslash) }
                    bytes.append(byte)
                }
            }
            bytes.append(quote)
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    /// `nil` is SQL NULL, also as an array element.
    public var postgresText: String? { self?.postgresText ?? nil }
}

extension PostgresEncodable where Self: RawRepresentable, RawValue == String {
    /// An enum whose raw values are the words a column holds is bound as its raw value.
    public var postgresText: String? { rawValue }
}

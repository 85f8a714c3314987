public import Foundation

/// A parsed JSON text, for readers that need more than ``JSONFields``' top-level scan (the gateway simulator reads
/// SendGrid's nested `personalizations`), without Foundation's `Any` boxes and the casts that unwrap them.
///
/// Numbers, `true`, `false` and `null` keep their literal text: the readers here only ever compare or print them.
public enum JSONValue: Sendable, Equatable {
    case string(String)
    case literal(String)
    case array([JSONValue])
    /// Members in the order they were written; a repeated key keeps every occurrence, and lookups take the first.
    case object([(key: String, value: JSONValue)])

    /// Parses one complete JSON text; `nil` when it is malformed or followed by anything but white space.
    public init?(parsing data: Data) {
        let parsed: JSONValue? = data.withUnsafeBytes { raw in
            var reader = JSONReader(bytes: raw)
            guard let value = reader.parseValue(depth: 0) else { return nil }
            reader.skipSpace()
            return reader.index == raw.count ? value : nil
        }
        guard let parsed else { return nil }
        self = parsed
    }

    /// The first member named `key` of an object; `nil` for anything else.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// The element at `index` of an array; `nil` for anything else or out of range.
    public subscript(index: Int) -> JSONValue? {
        guard case .array(let elements) = self, elements.indices.contains(index) else { return nil }
        return elements[index]
    }

    /// The text of a string; `nil` for anything else.
    public var string: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The elements of an array; empty for anything else.
    public var elements: [JSONValue] {
        if case .array(let elements) = self { return elements }
        return []
    }

    /// The members of an object; empty for anything else.
    public var members: [(key: String, value: JSONValue)] {
        if case .object(let members) = self { return members }
        return []
    }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)), (.literal(let a), .literal(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)):
            a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }
}

extension JSONReader {
    /// Deeper nesting than any gateway body is refused rather than followed, so a hostile body cannot exhaust the
    /// stack.
    static let maximumDepth = 64

    /// Reads the value at `index` and moves past it.
    mutating func parseValue(depth: Int) -> JSONValue? {
        skipSpace()
        guard index < bytes.count, depth < Self.maximumDepth else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return readString().map(JSONValue.string)
        case UInt8(ascii: "["):
            index += 1
            var elements: [JSONValue] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                guard let element = parseValue(depth: depth + 1) else { return nil }
                elements.append(element)
                guard let closed = readSeparator(closing: UInt8(ascii: "]")) else { return nil }
                if closed { return .array(elements) }
            }
        case UInt8(ascii: "{"):
            index += 1
            var members: [(key: String, value: JSONValue)] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let key = readString() else {
                    return nil
                }
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                index += 1
                guard let value = parseValue(depth: depth + 1) else { return nil }
                members.append((key, value))
                guard let closed = readSeparator(closing: UInt8(ascii: "}")) else { return nil }
                if closed { return .object(members) }
            }
        default:
            let start = index
            guard skipValue(), index > start else { return nil }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            return Self.isLiteral(text) ? .literal(text) : nil
        }
    }

    /// After an element: `true` at the closing bracket, `false` at a comma, `nil` at anything else.
    private mutating func readSeparator(closing: UInt8) -> Bool? {
        skipSpace()
        guard index < bytes.count else { return nil }
        let byte = bytes[index]
        index += 1
        if byte == closing { return true }
        return byte == UInt8(ascii: ",") ? false : nil
    }

    private static func isLiteral(_ text: String) -> Bool {
        if text == "true" || text == "false" || text == "null" { return true }
        let numberBytes = Set("0123456789+-.eE".utf8)
        return text.utf8.first != UInt8(ascii: "+") && text.utf8.allSatisfy(numberBytes.contains) && Double(text) != nil
    }
}

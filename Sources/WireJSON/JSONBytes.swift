public import Foundation

/// Writes a JSON body straight into bytes.
///
/// Every message of a send goes through here, and Foundation's `JSONSerialization` (boxing values into `Any`,
/// then walking them) was most of the daemon's CPU time per message; the bodies the gateways take are a fixed shape
/// of strings, so they are written in order, with only the string values escaped.
public struct JSONBytes: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 1024) {
        bytes.reserveCapacity(capacity)
    }

    /// Appends JSON punctuation and keys as they are, for example `{"to":`.
    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Appends `value` as a JSON string: quoted, with `"`, `\` and control characters escaped (RFC 8259 §7).
    public mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        stringContent(value)
        bytes.append(UInt8(ascii: "\""))
    }

    /// Appends a string already escaped by ``stringContent(_:)`` (or ``escaped(_:)``), in quotes.
    public mutating func escapedString(_ content: [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: content)
        bytes.append(UInt8(ascii: "\""))
    }

    /// Appends text already escaped as the inside of a JSON string, without quotes.
    public mutating func escapedContent(_ content: [UInt8]) {
        bytes.append(contentsOf: content)
    }

    /// `value` escaped as the inside of a JSON string, without the quotes: text that is the same in many bodies is
    /// escaped once and spliced in with ``escapedString(_:)``.
    public static func escaped(_ value: String) -> [UInt8] {
        var writer = JSONBytes(capacity: value.utf8.count + 16)
        writer.stringContent(value)
        return writer.bytes
    }

    /// Appends `value` escaped, without quotes.
    public mutating func stringContent(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            guard let base = utf8.baseAddress else { return }
            var start = 0
            var index = 0
            // An email's HTML part is kilobytes per message: eight bytes are looked at a time, and only a word that
            // holds a byte to escape is looked at byte by byte.
            while index < utf8.count {
                if index + 8 <= utf8.count {
                    let word = UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
                    if !Self.needsEscape(word) {
                        index += 8
                        continue
                    }
                }
                let end = min(index + 8, utf8.count)
                while index < end {
                    let byte = utf8[index]
                    if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                        Self.escape(byte, into: &bytes)
                        start = index + 1
                    }
                    index += 1
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
    }

    /// Whether any of a word's eight bytes is below 0x20, `"` or `\` (the bit tricks of "Bit Twiddling Hacks": a
    /// byte is zero, or less than n, where subtracting borrows into its high bit; bytes of 0x80 and up never match).
    @inline(__always)
    static func needsEscape(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let below0x20 = (word &- ones &* 0x20) & ~word & highs
        let quote = word ^ (ones &* UInt64(UInt8(ascii: "\"")))
        let backslash = word ^ (ones &* UInt64(UInt8(ascii: "\\")))
        let zeroQuote = (quote &- ones) & ~quote & highs
        let zeroBackslash = (backslash &- ones) & ~backslash & highs
        return (below0x20 | zeroQuote | zeroBackslash) != 0
    }

    /// Appends `value` as a JSON number.
    public mutating func integer(_ value: Int) {
        bytes.append(contentsOf: String(value).utf8)
    }

    /// Appends an object of string members in order, for example `{"from":"…","to":"…"}`.
    public mutating func object(_ members: KeyValuePairs<StaticString, String>) {
        raw("{")
        for (index, (key, value)) in members.enumerated() {
            if index > 0 { raw(",") }
            raw("\"")
            raw(key)
            raw("\":")
            string(value)
        }
        raw("}")
    }

    public var data: Data { Data(bytes) }

    private static func escape(_ byte: UInt8, into bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\\"))
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
        case 0x0A: bytes.append(UInt8(ascii: "n"))
        case 0x0D: bytes.append(UInt8(ascii: "r"))
        case 0x09: bytes.append(UInt8(ascii: "t"))
        default:
            let digits = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30, digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
        }
    }
}

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
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                Self.escape(byte, into: &bytes)
                start = index + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        bytes.append(UInt8(ascii: "\""))
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

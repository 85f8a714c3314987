/// A forward-only reader over the bytes of one JSON text, shared by ``JSONFields`` and ``JSONValue``.
struct JSONReader {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func skipSpace() {
        while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    mutating func topLevelValue(of key: [UInt8]) -> String? {
        skipSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        while true {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
            guard let name = readString() else { return nil }
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            skipSpace()
            guard index < bytes.count else { return nil }
            if Array(name.utf8) == key {
                if bytes[index] == UInt8(ascii: "\"") { return readString() }
                let start = index
                guard skipValue(), index > start else { return nil }
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                return text.hasPrefix("{") || text.hasPrefix("[") ? nil : text
            }
            guard skipValue() else { return nil }
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { return nil }
            index += 1
        }
    }

    /// Reads a string at `index` (which holds its opening quote), unescaping it.
    mutating func readString() -> String? {
        index += 1
        // Most strings have no escape: take them in one piece.
        var end = index
        while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\") { end += 1 }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            defer { index = end + 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[index..<end]), as: UTF8.self)
        }
        var scalars = Array(bytes[index..<end])
        index = end
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: scalars, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { return nil }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "u"):
                    guard index + 4 <= bytes.count,
                        let code = UInt32(
                            String(
                                decoding: UnsafeRawBufferPointer(rebasing: bytes[index..<index + 4]),
                                as: UTF8.self
                            ),
                            radix: 16
                        )
                    else { return nil }
                    index += 4
                    // Surrogate pairs do not occur in the identifiers read here; they become U+FFFD.
                    scalars.append(
                        contentsOf: Array(String(Unicode.Scalar(code).map(Character.init) ?? "\u{FFFD}").utf8)
                    )
                default: scalars.append(escaped)
                }
            default:
                scalars.append(byte)
            }
        }
        return nil
    }

    /// Moves past one value of any kind; `false` on malformed input.
    mutating func skipValue() -> Bool {
        guard index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return readString() != nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    guard readString() != nil else { return false }
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        index += 1
                        return true
                    }
                default: break
                }
                index += 1
            }
            return false
        default:
            while index < bytes.count,
                bytes[index] != UInt8(ascii: ","), bytes[index] != UInt8(ascii: "}"),
                bytes[index] != UInt8(ascii: "]"), !Self.isSpace(bytes[index])
            {
                index += 1
            }
            return true
        }
    }
}

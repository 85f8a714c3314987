/// PostgreSQL's COPY text format: tab-separated columns, `\N` for NULL, backslash escapes.
///
/// Related PostgreSQL documentation: https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2
enum CopyText {
    static func append(_ row: [String?], to buffer: inout [UInt8]) {
        for (index, value) in row.enumerated() {
            if index > 0 { buffer.append(UInt8(ascii: "\t")) }
            guard let value else {
                buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")])
                continue
            }
            for byte in value.utf8 {
                switch byte {
                case UInt8(ascii: "\\"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case UInt8(ascii: "\t"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                case UInt8(ascii: "\n"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case UInt8(ascii: "\r"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                default: buffer.append(byte)
                }
            }
        }
        buffer.append(UInt8(ascii: "\n"))
    }

    static func parse(_ line: UnsafeRawBufferPointer) -> [String?] {
        var values: [String?] = []
        var field: [UInt8] = []
        var isNull = false
        var index = 0
        let count = line.last == UInt8(ascii: "\n") ? line.count - 1 : line.count
        func finishField() {
            values.append(isNull ? nil : String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            isNull = false
        }
        while index < count {
            let byte = line[index]
            if byte == UInt8(ascii: "\t") {
                finishField()
            } else if byte == UInt8(ascii: "\\"), index + 1 < count {
                index += 1
                switch line[index] {
                case UInt8(ascii: "N"): isNull = true
                case UInt8(ascii: "t"): field.append(UInt8(ascii: "\t"))
                case UInt8(ascii: "n"): field.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "r"): field.append(UInt8(ascii: "\r"))
                case UInt8(ascii: "b"): field.append(8)
                case UInt8(ascii: "f"): field.append(12)
                case UInt8(ascii: "v"): field.append(11)
                default: field.append(line[index])
                }
            } else {
                field.append(byte)
            }
            index += 1
        }
        finishField()
        return values
    }
}

/// The code of a short claim link: 13 random bytes (104 bits) written as 18 base62 characters, so that a link such
/// as `https://coupond.example/c/3kTMd0Wf8PzqLhA2xY` leaves room in one SMS segment for the message.
public enum ShortLinkCode {
    public static let byteCount = 13
    public static let length = 18
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// The 18 characters of `bytes` (13 of them), most significant first.
    public static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == byteCount, "a link code is \(byteCount) bytes")
        var number = bytes
        var digits = [UInt8](repeating: alphabet[0], count: length)
        for position in stride(from: length - 1, through: 0, by: -1) {
            // Long division of the big-endian number by 62; the remainder is the next digit from the right.
            var remainder = 0
            for index in number.indices {
                let value = remainder << 8 | Int(number[index])
                number[index] = UInt8(value / 62)
                remainder = value % 62
            }
            digits[position] = alphabet[remainder]
        }
        return String(decoding: digits, as: UTF8.self)
    }

    /// The bytes of a code, or `nil` when `text` is not 18 base62 characters of a 104-bit number.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        guard text.utf8.count == length else { return nil }
        var number = [UInt8](repeating: 0, count: byteCount)
        for character in text.utf8 {
            guard let digit = alphabet.firstIndex(of: character) else { return nil }
            // number = number * 62 + digit, big-endian.
            var carry = digit
            for index in number.indices.reversed() {
                let value = Int(number[index]) * 62 + carry
                number[index] = UInt8(value & 0xFF)
                carry = value >> 8
            }
            guard carry == 0 else { return nil }
        }
        return number
    }
}

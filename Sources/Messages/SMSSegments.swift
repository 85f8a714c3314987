/// How an SMS text is encoded and into how many parts it is split.
///
/// GSM 03.38 7-bit text fits 160 characters in one message and 153 per part when concatenated (the user data
/// header takes 7); characters of the extension table (`{ } [ ] ~ \ | ^ €` and form feed) take two septets. Any
/// other character forces UCS-2: 70 UTF-16 units alone, 67 per part.
public struct SMSSegments: Sendable, Equatable, Codable {
    public enum Encoding: String, Sendable, Codable {
        case gsm7 = "GSM-7"
        case ucs2 = "UCS-2"
    }

    public var encoding: Encoding
    /// Septets for GSM-7, UTF-16 code units for UCS-2.
    public var units: Int
    /// Number of messages billed.
    public var count: Int

    /// The longest SMS body the providers take: Twilio's `CreateMessage` documents 1,600 characters, and refuses more.
    public static let maxCharacters = 1600

    /// Whether `text` is longer than ``maxCharacters``: such an SMS is refused rather than sent.
    public static func isTooLong(_ text: String) -> Bool {
        text.unicodeScalars.count > maxCharacters
    }

    public init(text: String) {
        var septets = 0
        var isGSM = true
        for scalar in text.unicodeScalars {
            // Most SMS text is ASCII: a table answers without hashing.
            if scalar.value < 128 {
                let cost = Self.asciiSeptets[Int(scalar.value)]
                guard cost > 0 else {
                    isGSM = false
                    break
                }
                septets += Int(cost)
            } else if Self.basic.contains(scalar) {
                septets += 1
            } else if Self.extended.contains(scalar) {
                septets += 2
            } else {
                isGSM = false
                break
            }
        }
        if isGSM {
            encoding = .gsm7
            units = septets
            count = septets <= 160 ? 1 : Self.parts(septets, per: 153)
        } else {
            encoding = .ucs2
            units = text.utf16.count
            count = units <= 70 ? 1 : Self.parts(units, per: 67)
        }
    }

    private static func parts(_ units: Int, per size: Int) -> Int { (units + size - 1) / size }

    private static let basic: Set<Unicode.Scalar> = Set(
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
            + "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà").unicodeScalars
    )
    private static let extended: Set<Unicode.Scalar> = Set("^{}\\[~]|€\u{0C}".unicodeScalars)
    /// Septets of each ASCII character: 1 in the basic table, 2 in the extension table, 0 when not in GSM-7.
    private static let asciiSeptets: [UInt8] = (0..<128).map { value in
        let scalar = Unicode.Scalar(UInt8(value))
        return basic.contains(scalar) ? 1 : extended.contains(scalar) ? 2 : 0
    }
}

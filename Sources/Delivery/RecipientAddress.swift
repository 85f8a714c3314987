/// The last check of a recipient's address before a gateway request is built from it.
///
/// The database already fails a customer whose address is malformed (`coupond.email_unreachable` and
/// `sms_unreachable`, migration 0022); this is the same rule again where the address leaves, so that no value from a
/// customer row can reach an SMTP command line or a header even if a row got past the first check. A refused address
/// fails that customer's channel alone: no request is made, so the gateway's circuit breaker never sees it.
public enum RecipientAddress {
    /// RFC 5322 atext other than letters and digits: what a dot-atom local part may hold.
    private static let localSymbols = Set("!#$%&'*+-/=?^_`{|}~".utf8)

    /// Why `address` cannot be given to a gateway of `channel`, or `nil` when it can.
    public static func problem(_ address: String, email: Bool) -> FailureReason? {
        if email {
            if address.isEmpty { return .noEmailAddress }
            return isPlainEmailAddress(address) ? nil : .invalidEmailAddress
        }
        if address.isEmpty { return .noMobileNumber }
        return isE164(address) ? nil : .invalidMobileNumber
    }

    /// A plain addr-spec, as `coupond.email_address_valid` defines it: a dot-atom local part of at most 64 bytes, `@`,
    /// a domain of letter-digit-hyphen labels, at most 254 bytes in all, ASCII only.
    public static func isPlainEmailAddress(_ address: String) -> Bool {
        let bytes = Array(address.utf8)
        guard bytes.count <= 254, let at = bytes.lastIndex(of: UInt8(ascii: "@")), at > 0, at <= 64 else {
            return false
        }
        let local = bytes[..<at].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        let domain = bytes[(at + 1)...].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return local.allSatisfy { atom in
            !atom.isEmpty && atom.allSatisfy { isLetterOrDigit($0) || localSymbols.contains($0) }
        }
            && !domain.isEmpty
            && domain.allSatisfy { label in
                !label.isEmpty && label.allSatisfy { isLetterOrDigit($0) || $0 == UInt8(ascii: "-") }
                    && label.first != UInt8(ascii: "-") && label.last != UInt8(ascii: "-")
            }
    }

    /// `+`, a first digit 1 to 9, then 6 to 14 more digits, as `coupond.sms_unreachable` requires.
    public static func isE164(_ number: String) -> Bool {
        let bytes = Array(number.utf8)
        return (8...16).contains(bytes.count) && bytes[0] == UInt8(ascii: "+")
            && (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(bytes[1])
            && bytes.dropFirst(2).allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    private static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

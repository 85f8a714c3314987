internal import CLibPQ
import Foundation

/// Checks a libpq connection string (`postgresql://…` URI or `key=value …`) before any connection is tried, so that a
/// malformed one is a configuration error, not a database outage retried forever, and so that no message about it
/// carries its password.
public enum ConnectionString {
    /// What is wrong with `string`, with any password in it replaced by `***`; `nil` when libpq can use it.
    ///
    /// Beyond libpq's parse (syntax and known keywords, `PQconninfoParse`), the values that libpq checks only when it
    /// connects are checked here: `sslmode`, `port`, `connect_timeout` and `target_session_attrs`.
    public static func problem(_ string: String) -> String? {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(string, &error) else {
            let message = error.map { String(cString: $0) } ?? "it cannot be parsed"
            PQfreemem(error)
            return redact(message.trimmingCharacters(in: .whitespacesAndNewlines), in: string)
        }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { values[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        if let mode = values["sslmode"],
            !["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(mode)
        {
            return "sslmode \"\(mode)\" is not one of disable, allow, prefer, require, verify-ca, verify-full"
        }
        if let ports = values["port"] {
            for port in ports.split(separator: ",", omittingEmptySubsequences: false) {
                guard let number = Int(port), (1...65535).contains(number) else {
                    return "port \"\(redact(String(port), in: string))\" is not a port number from 1 to 65535"
                }
            }
        }
        if let timeout = values["connect_timeout"], Int(timeout) == nil {
            return "connect_timeout \"\(redact(timeout, in: string))\" is not a whole number of seconds"
        }
        if let attributes = values["target_session_attrs"],
            !["any", "read-write", "read-only", "primary", "standby", "prefer-standby"].contains(attributes)
        {
            return "target_session_attrs \"\(attributes)\" is not a value libpq knows"
        }
        return nil
    }

    /// `text` with the password of `connectionString` (as written, and percent-decoded) replaced by `***`.
    public static func redact(_ text: String, in connectionString: String) -> String {
        var result = text
        for secret in passwords(in: connectionString) where !secret.isEmpty {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        return result
    }

    /// The password a connection string carries, in the forms a message may echo.
    static func passwords(in string: String) -> [String] {
        let patterns = [
            #"^postgres(?:ql)?://[^:@/?#]*:([^@/?#]*)@"#,  // URI user:password@
            #"[?&]password=([^&#]*)"#,  // URI query parameter
            #"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]+)"#,  // key=value
        ]
        var found: [String] = []
        for pattern in patterns {
            guard let expression = try? NSRegularExpression(pattern: pattern) else { continue }
            let range = NSRange(string.startIndex..., in: string)
            for match in expression.matches(in: string, range: range) {
                guard let captured = Range(match.range(at: 1), in: string) else { continue }
                var value = String(string[captured])
                if value.hasPrefix("'") && value.hasSuffix("'") && value.count >= 2 {
                    found.append(value)
                    value = String(value.dropFirst().dropLast())
                }
                found.append(value)
                if let decoded = value.removingPercentEncoding, decoded != value { found.append(decoded) }
            }
        }
        // Longest first, so that a password containing another is replaced whole.
        return found.sorted { $0.count > $1.count }
    }
}

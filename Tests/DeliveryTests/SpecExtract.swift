import Foundation

/// An extract of a provider's OpenAPI description kept in `ProviderSpecs/`, and the subset of JSON Schema it uses:
/// `type`, `required`, `properties`, `additionalProperties`, `items`, `enum`, `pattern`, `minLength`, `maxLength`,
/// `maxItems`, `maxProperties`, `minimum`, `maximum` and `$ref` to its `definitions`.
struct SpecExtract {
    let root: [String: Any]

    init(_ name: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("ProviderSpecs/\(name).json")
        root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
    }

    func schema(_ key: String) -> [String: Any] { root[key] as? [String: Any] ?? [:] }

    /// What in `value` the schema refuses, one line per fault with its path; empty when it conforms.
    ///
    /// - Parameter strict: also refuse a property the schema does not declare: a field the provider does not know
    ///   is at best ignored, so relying on one (an idempotency key, say) is a mistake the test should catch.
    func violations(of value: Any, against schema: [String: Any], strict: Bool = true, path: String = "$") -> [String] {
        if let name = schema["$ref"] as? String {
            let definitions = root["definitions"] as? [String: Any] ?? [:]
            return violations(
                of: value,
                against: definitions[name] as? [String: Any] ?? [:],
                strict: strict,
                path: path
            )
        }
        var faults: [String] = []
        if let type = schema["type"] as? String, !Self.has(value, type: type) {
            return ["\(path): expected \(type), got \(Swift.type(of: value))"]
        }
        if let allowed = schema["enum"] as? [String], let text = value as? String, !allowed.contains(text) {
            faults.append("\(path): \(text) is not one of \(allowed)")
        }
        if let text = value as? String {
            let length = text.unicodeScalars.count
            if let minimum = schema["minLength"] as? Int, length < minimum {
                faults.append("\(path): shorter than \(minimum)")
            }
            if let maximum = schema["maxLength"] as? Int, length > maximum {
                faults.append("\(path): longer than \(maximum)")
            }
            if let pattern = schema["pattern"] as? String, text.range(of: pattern, options: .regularExpression) == nil {
                faults.append("\(path): \(text) does not match \(pattern)")
            }
        }
        if let number = (value as? NSNumber)?.doubleValue ?? (value as? String).flatMap(Double.init) {
            if let minimum = schema["minimum"] as? Double, number < minimum {
                faults.append("\(path): below \(minimum)")
            }
            if let maximum = schema["maximum"] as? Double, number > maximum {
                faults.append("\(path): above \(maximum)")
            }
        }
        if let array = value as? [Any] {
            if let maximum = schema["maxItems"] as? Int, array.count > maximum {
                faults.append("\(path): more than \(maximum) items")
            }
            if let items = schema["items"] as? [String: Any] {
                for (index, item) in array.enumerated() {
                    faults += violations(of: item, against: items, strict: strict, path: "\(path)[\(index)]")
                }
            }
        }
        if let object = value as? [String: Any] {
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                faults.append("\(path): \(key) is required")
            }
            if let maximum = schema["maxProperties"] as? Int, object.count > maximum {
                faults.append("\(path): more than \(maximum) properties")
            }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for (key, member) in object.sorted(by: { $0.key < $1.key }) {
                if let declared = properties[key] as? [String: Any] {
                    faults += violations(of: member, against: declared, strict: strict, path: "\(path).\(key)")
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    faults += violations(of: member, against: additional, strict: strict, path: "\(path).\(key)")
                } else if strict && schema["properties"] != nil {
                    faults.append("\(path): \(key) is not in the specification")
                }
            }
        }
        return faults
    }

    /// Form fields and query parameters are text on the wire: a number or boolean is checked by what it reads as.
    private static func has(_ value: Any, type: String) -> Bool {
        switch type {
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        case "string": return value is String
        case "integer":
            if let number = value as? NSNumber { return number.doubleValue == number.doubleValue.rounded() }
            return (value as? String).flatMap { Int($0) } != nil
        case "number": return value is NSNumber || (value as? String).flatMap(Double.init) != nil
        case "boolean": return (value as? String).map { $0 == "true" || $0 == "false" } ?? (value is Bool)
        default: return true
        }
    }

    /// An `application/x-www-form-urlencoded` body or query as an object of its fields.
    static func form(_ text: String) -> [String: Any] {
        var fields: [String: Any] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            fields[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        return fields
    }
}

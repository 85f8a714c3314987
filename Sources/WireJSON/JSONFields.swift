public import Foundation

/// Reads top-level fields of a gateway's small JSON answer (`{"id": "...", "segments": 1}`) without building a
/// Foundation object graph for every response.
public enum JSONFields {
    /// A top-level field's value: a string (unescaped), or the literal text of a number, `true`, `false` or `null`.
    /// `nil` when the body is not a JSON object or has no such field; nested objects and arrays are skipped.
    public static func value(_ key: String, in body: Data) -> String? {
        body.withUnsafeBytes { raw in
            var reader = JSONReader(bytes: raw)
            return reader.topLevelValue(of: Array(key.utf8))
        }
    }
}

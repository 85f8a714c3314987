import Foundation

/// A configuration value that is missing or wrong, naming the setting.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var setting: String
    public var reason: String

    public init(setting: String, reason: String) {
        self.setting = setting
        self.reason = reason
    }

    public var description: String { "configuration: \(setting) \(reason)" }
}

/// A value a setting can hold, and how the error names what was expected.
protocol SettingValue: Decodable {
    static var expected: String { get }
}

extension String: SettingValue { static var expected: String { "a string" } }
extension Bool: SettingValue { static var expected: String { "true or false" } }
extension Double: SettingValue { static var expected: String { "a number" } }
extension Int: SettingValue { static var expected: String { "a whole number" } }

/// A rule a setting's value must follow beyond its type, for example "a positive number".
struct SettingRule<Value> {
    /// What the error says the value must be.
    var expected: String
    var accepts: (Value) -> Bool

    /// Rates: above 0, at most a billion.
    static var positive: SettingRule<Double> {
        SettingRule<Double>(expected: "a positive number, at most 1000000000") { $0 > 0 && $0 <= 1e9 }
    }
    /// The longest duration a setting may hold: a year. Durations become milliseconds in whole numbers (libcurl's
    /// timeouts, NIO's deadlines, libpq's options), and a larger value would not fit or mean anything.
    static var maxSeconds: Double { 365.0 * 24 * 3600 }
    /// Durations in seconds: above 0, at most a year.
    static var seconds: SettingRule<Double> {
        SettingRule<Double>(expected: "a number of seconds above 0, at most \(Int(maxSeconds)) (a year)") {
            $0 > 0 && $0 <= maxSeconds
        }
    }
    /// Durations in seconds where 0 turns the thing off: 0 to a year.
    static var secondsOrZero: SettingRule<Double> {
        SettingRule<Double>(expected: "a number of seconds from 0 to \(Int(maxSeconds)) (a year)") {
            $0 >= 0 && $0 <= maxSeconds
        }
    }
    /// Counts (batch sizes, attempts, threads): 1 to a million.
    static var count: SettingRule<Int> {
        SettingRule<Int>(expected: "a whole number from 1 to 1000000") { (1...1_000_000) ~= $0 }
    }
    /// Caps where 0 means none: 0 to a million.
    static var countOrZero: SettingRule<Int> {
        SettingRule<Int>(expected: "a whole number from 0 to 1000000") { (0...1_000_000) ~= $0 }
    }
}

/// Reads one object of the configuration file: each setting by its name with its type and rule, and, once the reads
/// are done, refuses every key of the object that no read asked for, by name. So a setting is named once, where it
/// is read, and its default is the property's initial value.
struct SettingsReader {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    private let container: KeyedDecodingContainer<Key>
    /// The dotted path of this object, empty at the top.
    private let path: String
    /// The file the settings come from, for the error message.
    private let source: String
    private var asked: Set<String> = []

    /// The top-level object of the file `source`.
    init(_ decoder: any Decoder, source: String) throws {
        self.source = source
        path = ""
        do {
            container = try decoder.container(keyedBy: Key.self)
        } catch {
            throw ConfigurationError(setting: source, reason: "is not a JSON object")
        }
    }

    private init(container: KeyedDecodingContainer<Key>, path: String, source: String) {
        self.container = container
        self.path = path
        self.source = source
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    private func wrong(_ key: String, _ expected: String) -> ConfigurationError {
        ConfigurationError(setting: name(key), reason: "must be \(expected) (in \(source))")
    }

    /// Sets `value` from the setting `key` when the file has it.
    mutating func read<Value: SettingValue>(_ key: String, into value: inout Value, _ rule: SettingRule<Value>? = nil)
        throws
    {
        if let read = try decode(key, rule) { value = read }
    }

    /// Sets `value` from the setting `key` when the file has it; absent, it keeps its default.
    mutating func read<Value: SettingValue>(_ key: String, into value: inout Value?, _ rule: SettingRule<Value>? = nil)
        throws
    {
        if let read = try decode(key, rule) { value = read }
    }

    /// The setting `key` converted by `parse`, which names what it expected when it returns `nil`.
    mutating func read<Value>(_ key: String, into value: inout Value?, expected: String, _ parse: (String) -> Value?)
        throws
    {
        guard let text = try decode(key, nil as SettingRule<String>?) else { return }
        guard let parsed = parse(text) else { throw wrong(key, expected) }
        value = parsed
    }

    /// Reads the object `key` with `body`, then refuses the keys in it that `body` did not read.
    mutating func section(_ key: String, _ body: (inout SettingsReader) throws -> Void) throws {
        asked.insert(key)
        guard container.contains(Key(stringValue: key)) else { return }
        let nested: KeyedDecodingContainer<Key>
        do {
            nested = try container.nestedContainer(keyedBy: Key.self, forKey: Key(stringValue: key))
        } catch {
            throw wrong(key, "an object")
        }
        var reader = SettingsReader(container: nested, path: name(key), source: source)
        try body(&reader)
        try reader.refuseUnknown()
    }

    /// Refuses the first key (in name order) that no read asked for.
    func refuseUnknown() throws {
        if let unknown = container.allKeys.map(\.stringValue).filter({ !asked.contains($0) }).sorted().first {
            throw ConfigurationError(setting: name(unknown), reason: "is not a known setting (in \(source))")
        }
    }

    private mutating func decode<Value: SettingValue>(_ key: String, _ rule: SettingRule<Value>?) throws -> Value? {
        asked.insert(key)
        let codingKey = Key(stringValue: key)
        guard container.contains(codingKey) else { return nil }
        let value: Value
        do {
            value = try container.decode(Value.self, forKey: codingKey)
        } catch {
            throw wrong(key, rule?.expected ?? Value.expected)
        }
        if let rule, !rule.accepts(value) { throw wrong(key, rule.expected) }
        return value
    }
}

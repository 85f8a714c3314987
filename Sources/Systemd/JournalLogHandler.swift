public import Foundation
public import Logging

/// A swift-log handler that writes to the systemd journal with its native protocol, so that metadata become
/// fields: `send.id` is `SEND_ID`, and `journalctl -u coupond SEND_ID=42` finds a send's lines.
///
/// Related documentation: https://systemd.io/JOURNAL_NATIVE_PROTOCOL/
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let socketPath: String
    private let identifier: String

    public init(
        label: String,
        identifier: String = "coupond",
        socketPath: String = "/run/systemd/journal/socket"
    ) {
        self.label = label
        self.identifier = identifier
        self.socketPath = socketPath
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Whether standard error is the journal (`$JOURNAL_STREAM` names its device and inode), as under systemd.
    public static func standardErrorIsJournal(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Bool {
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// syslog priorities: trace and debug 7, info 6, notice 5, warning 4, error 3, critical 2.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// A metadata key as a journal field name: upper case, `[A-Z0-9_]`, not starting with `_` or a digit.
    public static func fieldName(_ key: String) -> String {
        var name = String(key.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
        while name.hasPrefix("_") { name.removeFirst() }
        if name.first?.isNumber == true { name = "F" + name }
        return name.isEmpty ? "FIELD" : String(name.prefix(64))
    }

    public func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("MESSAGE", "\(event.message)"),
            ("PRIORITY", String(Self.priority(event.level))),
            ("SYSLOG_IDENTIFIER", identifier),
            ("LOGGER", label),
            ("CODE_FILE", event.file),
            ("CODE_LINE", String(event.line)),
            ("CODE_FUNC", event.function),
        ]
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) { fields.append((Self.fieldName(key), "\(value)")) }
        _ = sendUnixDatagram(Self.encode(fields), to: socketPath)
    }

    /// The native protocol: `KEY=value\n`, or for values with a newline `KEY\n` + 64-bit little-endian length +
    /// value + `\n`.
    public static func encode(_ fields: [(String, String)]) -> [UInt8] {
        var payload: [UInt8] = []
        for (key, value) in fields {
            let bytes = Array(value.utf8)
            payload.append(contentsOf: key.utf8)
            if bytes.contains(UInt8(ascii: "\n")) {
                payload.append(UInt8(ascii: "\n"))
                withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { payload.append(contentsOf: $0) }
            } else {
                payload.append(UInt8(ascii: "="))
            }
            payload.append(contentsOf: bytes)
            payload.append(UInt8(ascii: "\n"))
        }
        return payload
    }
}

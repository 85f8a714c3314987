public import Foundation

/// Speaks systemd's notification protocol (sd_notify(3)) over `$NOTIFY_SOCKET`, without libsystemd.
///
/// Related documentation: https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html
public struct SystemdNotifier: Sendable {
    private let socketPath: String

    /// `nil` when the process was not started by systemd with `Type=notify` (no `NOTIFY_SOCKET`).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        socketPath = path
    }

    /// Sends `KEY=value` lines; returns whether systemd's socket took them.
    @discardableResult
    public func notify(_ fields: [(String, String)]) -> Bool {
        let text = fields.map { "\($0.0)=\($0.1)" }.joined(separator: "\n")
        return sendUnixDatagram(Array(text.utf8), to: socketPath)
    }

    /// `READY=1` with a status line: start-up is complete.
    @discardableResult
    public func ready(status: String) -> Bool { notify([("READY", "1"), ("STATUS", status)]) }

    @discardableResult
    public func status(_ line: String) -> Bool { notify([("STATUS", line)]) }

    @discardableResult
    public func stopping(status: String) -> Bool { notify([("STOPPING", "1"), ("STATUS", status)]) }

    @discardableResult
    public func watchdog() -> Bool { notify([("WATCHDOG", "1")]) }

    /// Asks systemd for more start-up (or shutdown) time.
    @discardableResult
    public func extendTimeout(seconds: Double) -> Bool {
        notify([("EXTEND_TIMEOUT_USEC", String(Int(seconds * 1_000_000)))])
    }

    /// How often to ping the watchdog: half of `WATCHDOG_USEC`, when the watchdog is on and meant for this process.
    public static func watchdogInterval(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        pid: Int32 = getpid()
    ) -> Double? {
        guard let text = environment["WATCHDOG_USEC"], let micros = Double(text), micros > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        return micros / 2_000_000
    }
}

import Foundation
import Logging
import Systemd
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct SystemdTests {
    @Test func notificationsReachTheNotifySocket() throws {
        let sink = try DatagramSink()
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": sink.path]))
        #expect(notifier.ready(status: "ready; waiting for due sends"))
        #expect(String(decoding: sink.receive(), as: UTF8.self) == "READY=1\nSTATUS=ready; waiting for due sends")
        #expect(notifier.watchdog())
        #expect(String(decoding: sink.receive(), as: UTF8.self) == "WATCHDOG=1")
        #expect(notifier.stopping(status: "stopping"))
        #expect(String(decoding: sink.receive(), as: UTF8.self) == "STOPPING=1\nSTATUS=stopping")
        #expect(notifier.extendTimeout(seconds: 1.5))
        #expect(String(decoding: sink.receive(), as: UTF8.self) == "EXTEND_TIMEOUT_USEC=1500000")
    }

    @Test func withoutNotifySocketThereIsNoNotifier() {
        #expect(SystemdNotifier(environment: [:]) == nil)
    }

    @Test func theWatchdogIntervalIsHalfOfWatchdogUsecForThisProcessOnly() {
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000"], pid: 42) == 15)
        #expect(
            SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"], pid: 42)
                == 15
        )
        #expect(
            SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"], pid: 42)
                == nil
        )
        #expect(SystemdNotifier.watchdogInterval(environment: [:], pid: 42) == nil)
    }

    @Test func journalEntriesCarryPriorityIdentifierCodeAndMetadataFields() throws {
        let sink = try DatagramSink()
        var handler = JournalLogHandler(label: "coupond", socketPath: sink.path)
        handler.logLevel = .debug
        handler[metadataKey: "instance"] = "vm:1"
        let logger = Logger(label: "coupond") { _ in handler }
        logger.warning("send failed at its hour", metadata: ["send.id": "42", "group.id": "7"])
        let text = String(decoding: sink.receive(), as: UTF8.self)
        let fields = Set(text.split(separator: "\n").map(String.init))
        #expect(fields.contains("MESSAGE=send failed at its hour"))
        #expect(fields.contains("PRIORITY=4"))
        #expect(fields.contains("SYSLOG_IDENTIFIER=coupond"))
        #expect(fields.contains("SEND_ID=42"))
        #expect(fields.contains("GROUP_ID=7"))
        #expect(fields.contains("INSTANCE=vm:1"))
        #expect(fields.contains { $0.hasPrefix("CODE_FILE=") && $0.hasSuffix("SystemdTests.swift") })
        #expect(fields.contains { $0.hasPrefix("CODE_LINE=") })
    }

    @Test func multiLineValuesUseTheBinaryFormat() {
        let bytes = JournalLogHandler.encode([("MESSAGE", "two\nlines")])
        let expected: [UInt8] = Array("MESSAGE\n".utf8) + [9, 0, 0, 0, 0, 0, 0, 0] + Array("two\nlines\n".utf8)
        #expect(bytes == expected)
    }

    @Test(arguments: [
        (Logger.Level.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
    ])
    func prioritiesFollowSyslog(level: Logger.Level, priority: Int) {
        #expect(JournalLogHandler.priority(level) == priority)
    }

    @Test func fieldNamesAreValidJournalNames() {
        #expect(JournalLogHandler.fieldName("send.id") == "SEND_ID")
        #expect(JournalLogHandler.fieldName("_secret") == "SECRET")
        #expect(JournalLogHandler.fieldName("9lives") == "F9LIVES")
    }
}

import Dispatch
import Foundation

/// Runs `body` on `count` threads of their own at once and waits for all of them.
///
/// Dedicated threads, not Dispatch's pool: the bodies block on the database, and a pool as small as this machine's
/// two cores would run them one after another instead of racing them.
public func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    let start = DispatchSemaphore(value: 0)
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            start.wait()
            body(index)
            group.leave()
        }
        thread.start()
    }
    for _ in 0..<count { start.signal() }
    group.wait()
}

/// Hands each racing thread its own connection.
///
/// `@unchecked Sendable` because each connection is used by exactly one thread, the one whose index it has, and the
/// list outlives the threads (``concurrently(_:_:)`` waits for them).
public final class ConnectionList<Connection>: @unchecked Sendable {
    private let connections: [Connection]
    public init(_ connections: [Connection]) { self.connections = connections }
    public func take(_ index: Int) -> Connection { connections[index] }
}

/// What racing threads report, collected safely.
public final class Outcomes: @unchecked Sendable {
    // `@unchecked Sendable`: every access to `stored` holds `lock`.
    private let lock = NSLock()
    private var stored: [String] = []

    public init() {}

    public func add(_ value: String) { lock.withLock { stored.append(value) } }
    public var values: [String] { lock.withLock { stored } }
}

import Foundation
import NIOPosix
import Postgres
import Synchronization

/// A few database connections for the HTTP endpoints, used on NIO's blocking thread pool: libpq calls block, and an
/// event loop must never wait on one.
final class EndpointDatabase: Sendable {
    /// A connection that one request uses at a time: taken from the pool under its lock, given back after.
    private final class Pooled: @unchecked Sendable {
        let connection: PostgresConnection
        init(_ connection: PostgresConnection) { self.connection = connection }
    }

    private let connect: @Sendable () throws -> PostgresConnection
    private let idle = Mutex<[Pooled]>([])
    /// Connections kept for later; more may be open while requests overlap.
    private let keep: Int

    init(connect: @escaping @Sendable () throws -> PostgresConnection, keep: Int = 4) {
        self.connect = connect
        self.keep = keep
    }

    /// Runs `body` with a connection on the blocking pool. A connection left in doubt by an error is closed, not kept.
    func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive { [self] in try withConnection(body) }
    }

    /// Runs `body` with a connection on a thread of its own: for work that waits on a client (a report download
    /// paced by a slow reader), which would otherwise hold one of the pool's few threads for as long.
    func runOnOwnThread<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { [self] in continuation.resume(with: Result { try withConnection(body) }) }
            thread.name = "http-stream"
            thread.start()
        }
    }

    private func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let pooled = try idle.withLock { $0.popLast() } ?? Pooled(connect())
        do {
            let result = try body(pooled.connection)
            giveBack(pooled)
            return result
        } catch let error as PostgresError where error.code == .queryFailed && !error.isTransient {
            // The server refused the statement (a rule, a missing row): the session is as good as before.
            giveBack(pooled)
            throw error
        } catch {
            // A broken connection, or work stopped in the middle (a COPY whose client went away).
            pooled.connection.close()
            throw error
        }
    }

    private func giveBack(_ pooled: Pooled) {
        let kept = idle.withLock { idle -> Bool in
            guard idle.count < keep else { return false }
            idle.append(pooled)
            return true
        }
        if !kept { pooled.connection.close() }
    }

    /// Closes the connections kept.
    func close() {
        for pooled in idle.withLock({ idle in
            defer { idle.removeAll() }; return idle
        }) { pooled.connection.close() }
    }
}

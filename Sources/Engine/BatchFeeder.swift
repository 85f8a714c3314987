import Dispatch
import Foundation
import Postgres
import Storage
import Synchronization

/// The page and prepare stages of a send, on a thread and a database connection of their own.
///
/// It reads the next page of pending recipients and issues their claim links and messages while the worker sends and
/// records the batches before them: the worker's database round trips and the preparation no longer wait for each
/// other. At most `capacity` prepared batches wait for the worker, which bounds memory. (The feeder writes nothing:
/// claim-token hashes go to the database with the outcomes.)
///
/// ### Threading
/// ``start()`` starts the thread; ``stop()`` cancels it and waits until it has closed its connection.
final class BatchFeeder: Sendable {
    /// What the worker takes next.
    enum Item {
        case batch([PreparedRecipient])
        /// No pending recipient is left after the last batch.
        case end
        case failure(any Error)
    }

    private struct State {
        var ready: [Item] = []
        var cancelled = false
    }

    private let sendID: Int64
    private let batchSize: Int
    private let preparation: BatchPreparation
    private let connect: @Sendable () throws -> PostgresConnection
    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)
    /// Free places for prepared batches. Made at 0 and signalled up to the capacity: libdispatch traps when a
    /// semaphore is released below the value it was made with, which a stop with batches still held would do.
    private let space = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    init(
        sendID: Int64,
        batchSize: Int,
        capacity: Int = 2,
        preparation: BatchPreparation,
        connect: @escaping @Sendable () throws -> PostgresConnection
    ) {
        self.sendID = sendID
        self.batchSize = batchSize
        self.preparation = preparation
        self.connect = connect
        for _ in 0..<capacity { space.signal() }
    }

    func start() {
        let thread = Thread { [self] in
            produce()
            finished.signal()
        }
        thread.name = "send-\(sendID)-feeder"
        thread.start()
    }

    /// The next item; with `wait` false, `nil` at once when none is ready yet.
    func next(wait: Bool) -> Item? {
        guard available.wait(timeout: wait ? .distantFuture : .now()) == .success else { return nil }
        let item = state.withLock { $0.ready.removeFirst() }
        if case .batch = item { space.signal() }
        return item
    }

    /// Cancels the feeding and waits for the thread to end; a batch it was preparing is dropped (the same messages
    /// and tokens are derived when the batch is sent later).
    func stop() {
        state.withLock { $0.cancelled = true }
        space.signal()
        finished.wait()
    }

    private var isCancelled: Bool { state.withLock { $0.cancelled } }

    private func hand(_ item: Item) {
        state.withLock { $0.ready.append(item) }
        available.signal()
    }

    private func produce() {
        let connection: PostgresConnection
        do {
            connection = try connect()
        } catch {
            hand(.failure(error))
            return
        }
        defer { connection.close() }
        let store = EngineStore(connection: connection, owner: "", leaseSeconds: 0)
        var cursor: Int64 = 0
        do {
            while true {
                space.wait()
                if isCancelled { return }
                let page = try store.pendingRecipients(sendID: sendID, after: cursor, limit: batchSize)
                guard let last = page.last else {
                    hand(.end)
                    return
                }
                cursor = last.customerID
                hand(.batch(preparation.prepare(page)))
            }
        } catch {
            hand(.failure(error))
        }
    }
}

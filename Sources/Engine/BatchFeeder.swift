import Dispatch
import Foundation
import Messages
import Postgres
import Storage
import Synchronization

/// The page and prepare stages of a send, on a thread and a database connection of their own.
///
/// It writes the next part of the recipient list (or, after a restart, reads the next page of recipients still
/// pending) and issues their claim links and messages while the worker sends and records the batches before them:
/// the worker's database round trips and the preparation no longer wait for each other. At most `capacity` prepared
/// batches wait for the worker, which bounds memory. Claim-token hashes go to the database with the outcomes.
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

    private let send: ClaimedSend
    /// The instance holding the send's lease, which writing the recipient list checks.
    private let owner: String
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
        send: ClaimedSend,
        owner: String,
        batchSize: Int,
        capacity: Int = 2,
        preparation: BatchPreparation,
        connect: @escaping @Sendable () throws -> PostgresConnection
    ) {
        self.send = send
        self.owner = owner
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
        thread.name = "send-\(send.id)-feeder"
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
        let store = RecipientStore(connection: connection, owner: owner)
        do {
            // Rows written before a restart come first, then the rest of the list as it is written.
            var writtenUpTo = try store.writtenUpTo(sendID: send.id)
            var cursor = RecipientStore.beforeEveryCustomer
            if writtenUpTo != RecipientStore.beforeEveryCustomer {
                // The rows came from another worker's start: fresh statistics keep the pages on the primary key.
                try store.analyzeRecipients()
            }
            while true {
                space.wait()
                if isCancelled { return }
                let page = try nextPage(store, cursor: &cursor, writtenUpTo: &writtenUpTo)
                guard let page else {
                    hand(.end)
                    return
                }
                hand(.batch(preparation.prepare(page)))
            }
        } catch {
            hand(.failure(error))
        }
    }

    /// The next non-empty page of pending recipients, or `nil` when the list is written and finished.
    private func nextPage(
        _ store: RecipientStore,
        cursor: inout Int64,
        writtenUpTo: inout Int64?
    ) throws -> [PendingRecipient]? {
        while true {
            if writtenUpTo.map({ cursor < $0 }) ?? true {
                let page = try store.pendingRecipients(sendID: send.id, after: cursor, limit: batchSize)
                if let last = page.last {
                    cursor = last.customerID
                    return page
                }
                guard let upTo = writtenUpTo else { return nil }
                cursor = upTo
            }
            guard let upTo = writtenUpTo else { return nil }
            let written = try store.writeRecipients(
                of: send,
                after: upTo,
                limit: batchSize,
                shortEmailLinks: preparation.shortLinks?.email ?? false,
                shortSMSLinks: preparation.shortLinks?.sms ?? false
            )
            writtenUpTo = written.writtenUpTo
            cursor = written.writtenUpTo ?? written.pending.last?.customerID ?? cursor
            // A part whose members are all unreachable has nothing to send: write the next one.
            if !written.pending.isEmpty { return written.pending }
            if writtenUpTo == nil { return nil }
        }
    }
}

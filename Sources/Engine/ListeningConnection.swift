import Logging
import Postgres

/// The connection of a loop that lasts as long as the daemon (the scheduler, the coupon watch): opened when needed,
/// with its `LISTEN`s, and after an error closed and opened again after a pause that doubles up to 10 seconds, so that
/// a database that is away is retried without a tight loop and without giving up.
struct ListeningConnection {
    let connect: @Sendable () throws -> PostgresConnection
    /// The channels to listen on; none when the engine polls only.
    let channels: [String]
    let logger: Logger
    /// What the log line says when the connection fails, for example `database unavailable; retrying`.
    let failure: Logger.Message
    private var connection: PostgresConnection?
    private var delay = 0.5

    init(
        connect: @escaping @Sendable () throws -> PostgresConnection,
        channels: [String],
        logger: Logger,
        failure: Logger.Message
    ) {
        self.connect = connect
        self.channels = channels
        self.logger = logger
        self.failure = failure
    }

    /// Runs `body` with the connection, opened first when there is none (`fresh` then says so: whatever was
    /// notified meanwhile was missed). An error is logged, and the connection closed and retried after the pause.
    mutating func run(stop: StopSignal, _ body: (_ connection: PostgresConnection, _ fresh: Bool) throws -> Void) {
        do {
            var fresh = false
            if connection == nil {
                let opened = try connect()
                do {
                    for channel in channels { try opened.listen(channel) }
                } catch {
                    opened.close()
                    throw error
                }
                connection = opened
                delay = 0.5
                fresh = true
            }
            guard let connection else { return }
            try body(connection, fresh)
        } catch {
            logger.error(failure, metadata: ["error": "\(error)", "retry.seconds": "\(delay)"])
            close()
            stop.sleep(delay)
            delay = min(delay * 2, 10)
        }
    }

    mutating func close() {
        connection?.close()
        connection = nil
    }
}

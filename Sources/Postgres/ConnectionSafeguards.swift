/// Limits that keep a daemon's connection from hanging on forever: a dead peer found by TCP keepalives and
/// `tcp_user_timeout` (a black-holed network otherwise leaves libpq waiting for hours), a statement that runs too
/// long, and a transaction left open by a client that stopped (SIGSTOP, a stuck thread), whose row locks would keep
/// other instances from taking its send over.
///
/// Zero turns a limit off. The two server settings travel in the startup packet's `options`, which a
/// transaction-pooling proxy such as PgBouncer refuses unless told to ignore it; set them on the role instead
/// (`ALTER ROLE … SET statement_timeout = …`) and turn them off here.
public struct ConnectionSafeguards: Sendable, Equatable {
    /// Seconds of silence before the first keepalive probe (then every 5 s, 3 probes).
    public var keepalivesIdle: Double
    /// Seconds data may stay unacknowledged before the connection counts as dead.
    public var tcpUserTimeout: Double
    /// `statement_timeout`, in seconds.
    public var statementTimeout: Double
    /// `idle_in_transaction_session_timeout`, in seconds.
    public var idleInTransactionTimeout: Double

    public init(
        keepalivesIdle: Double = 15,
        tcpUserTimeout: Double = 20,
        statementTimeout: Double = 60,
        idleInTransactionTimeout: Double = 10
    ) {
        self.keepalivesIdle = keepalivesIdle
        self.tcpUserTimeout = tcpUserTimeout
        self.statementTimeout = statementTimeout
        self.idleInTransactionTimeout = idleInTransactionTimeout
    }

    /// libpq connection keywords for these limits.
    var keywords: [(String, String)] {
        var keywords: [(String, String)] = []
        if keepalivesIdle > 0 {
            keywords += [
                ("keepalives", "1"), ("keepalives_idle", "\(Int(keepalivesIdle.rounded(.up)))"),
                ("keepalives_interval", "5"), ("keepalives_count", "3"),
            ]
        }
        if tcpUserTimeout > 0 { keywords.append(("tcp_user_timeout", "\(Int(tcpUserTimeout * 1000))")) }
        var options: [String] = []
        if statementTimeout > 0 { options.append("-c statement_timeout=\(Int(statementTimeout * 1000))") }
        if idleInTransactionTimeout > 0 {
            options.append("-c idle_in_transaction_session_timeout=\(Int(idleInTransactionTimeout * 1000))")
        }
        if !options.isEmpty { keywords.append(("options", options.joined(separator: " "))) }
        return keywords
    }
}

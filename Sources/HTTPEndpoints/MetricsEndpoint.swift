import Hummingbird
import Postgres
import Prometheus
import Storage

/// `GET /metrics`: everything the metrics backend holds (messages, recipients, gateway requests, retries, breaker
/// state), plus what only the database knows, read at each scrape: sends by status and how late the scheduler is.
extension Endpoints {
    static var databaseUp: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "coupond",
            metricName: "database",
            unitName: "up",
            helpText: "1 when the last scrape could read the database, 0 when it could not"
        )
    }
    static var sends: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "coupond",
            metricName: "sends",
            unitName: "",
            helpText: "Sends in the database by status"
        )
    }
    static var schedulerLag: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "coupond",
            metricName: "scheduler_lag",
            unitName: "seconds",
            helpText: "How long the oldest due send that has not started has waited (0 when none waits)"
        )
    }

    func metrics() async throws -> Response {
        guard let registry = dependencies.metrics else { return Self.text(.notFound, "metrics are not served here\n") }
        let snapshot: (statuses: [String: Int], lag: Double)?
        do {
            snapshot = try await database.run { connection in
                var statuses: [String: Int] = [:]
                for row in try connection.query("SELECT status, count(*)::int AS n FROM coupond.sends GROUP BY status")
                {
                    statuses[try row.decode("status")] = try row.decode("n")
                }
                // The oldest due send that has not started, however long it has waited (0 when none waits).
                let lag: Double =
                    try connection.queryRow(
                        """
                        SELECT coalesce(extract(epoch FROM coupond.clock_now() - min(scheduled_at)), 0)::float8 AS lag
                        FROM coupond.sends WHERE status = 'not_started' AND scheduled_at <= coupond.clock_now()
                        """
                    )?.decode("lag") ?? 0
                return (statuses, lag)
            }
        } catch is PostgresError {
            snapshot = nil
        }
        registry.makeGauge(descriptor: Self.databaseUp).set(Double(snapshot == nil ? 0 : 1))
        if let snapshot {
            for status in SendStatus.allCases {
                registry.makeGauge(descriptor: Self.sends, labels: [("status", status.rawValue)])
                    .set(Double(snapshot.statuses[status.rawValue] ?? 0))
            }
            registry.makeGauge(descriptor: Self.schedulerLag).set(snapshot.lag)
        }
        return Self.text(.ok, registry.emitToString(), type: "text/plain; version=0.0.4; charset=utf-8")
    }
}

import Curl
import Metrics

/// What one gateway's requests do, as swift-metrics counters, timers and a gauge. `coupond run` bootstraps a
/// Prometheus backend and serves them at `/metrics`; without a backend they cost next to nothing.
///
/// Every handle is made once here: making one looks it up in the backend's registry under a lock, which is too much
/// to do per message.
struct DeliveryMetrics: Sendable {
    /// Request durations (libcurl's total time) by the answer's status class: `2xx`, `3xx`, `4xx`, `5xx`.
    private let durations: [Timer]
    /// Requests that got no HTTP answer: no connection, a timeout, a connection closed before the answer.
    private let transportErrors: Counter
    private let retries: Counter
    private let up: Gauge

    init(gateway: String) {
        durations = ["1xx", "2xx", "3xx", "4xx", "5xx"].map {
            Timer(
                label: "coupond_gateway_request_duration_seconds",
                dimensions: [("gateway", gateway), ("status", $0)],
                preferredDisplayUnit: .seconds
            )
        }
        transportErrors = Counter(label: "coupond_gateway_transport_errors_total", dimensions: [("gateway", gateway)])
        retries = Counter(label: "coupond_gateway_retries_total", dimensions: [("gateway", gateway)])
        up = Gauge(label: "coupond_gateway_up", dimensions: [("gateway", gateway)])
        up.record(1)
    }

    /// One request's end. Cancelled, held and shut-down requests never reached the gateway and are left out.
    func observe(_ result: Result<HTTPResponse, CurlError>) {
        switch result {
        case .success(let response):
            let index = min(max(response.status / 100, 1), 5) - 1
            durations[index].recordNanoseconds(Int64(response.totalSeconds * 1_000_000_000))
        case .failure(let error) where error.isShutdown || error.isCancelled || error.isHeldPastDeadline:
            break
        case .failure:
            transportErrors.increment()
        }
    }

    func retried() { retries.increment() }

    /// 1 while the circuit breaker lets requests through, 0 while it holds them.
    func breakerChanged(open: Bool) { up.record(open ? 0 : 1) }
}

internal import CCurl

/// A transfer that libcurl could not complete: no HTTP response at all (connect failure, timeout, dropped
/// connection). An HTTP error status is a response, not a `CurlError`.
public struct CurlError: Error, Sendable, CustomStringConvertible {
    /// libcurl: the `CURLcode` value.
    public var code: Int
    /// libcurl's text for the code (`curl_easy_strerror`).
    public var codeDescription: String
    /// The contents of `CURLOPT_ERRORBUFFER`, which may name the host.
    public var detail: String
    /// What was being done, for example `perform`.
    public var operation: String
    /// Whether any of the request had been written to the server when the transfer ended: then the server may have
    /// acted on it, and only an idempotent API may be asked again blind.
    public var requestSent = false

    init(code: CURLcode, detail: String, operation: String, requestSent: Bool = false) {
        self.code = Int(code.rawValue)
        self.codeDescription = String(cString: curl_easy_strerror(code))
        self.detail = detail
        self.operation = operation
        self.requestSent = requestSent
    }

    /// Whether the failure was a timeout (libcurl: `CURLE_OPERATION_TIMEDOUT`).
    public var isTimeout: Bool { code == Int(CURLE_OPERATION_TIMEDOUT.rawValue) }

    /// Names the operation and libcurl's code; leaves out the error buffer, which can hold a URL.
    public var description: String { "CurlError(\(operation)): \(codeDescription) (\(code))" }
}

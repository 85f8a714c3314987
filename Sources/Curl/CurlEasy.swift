internal import CCurl

/// Performs HTTP requests with libcurl's easy interface, one at a time, on the calling thread.
///
/// Reusing one client reuses its connections (libcurl keeps them in the easy handle's cache).
///
/// ### Threading
/// One thread at a time: the type is not `Sendable`. Calls block; never call them on Swift's cooperative pool.
///
/// ### Ownership
/// The client owns one easy handle (``CurlHandle``), created in `init` and cleaned up when the client goes.
///
/// Related libcurl documentation: https://curl.se/libcurl/c/libcurl-easy.html
public final class CurlEasyClient {
    private let handle = CurlHandle()

    /// Initialises libcurl globally. Call once from `main` before starting threads.
    public static func globalInit() {
        // > This function is not thread safe. You must not call it when any other thread in the program is running.
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }

    public init() {}

    /// Sends a request and waits for its response.
    ///
    /// - Throws: ``CurlError`` when no response arrived (timeouts, refused or dropped connections).
    public func perform(_ request: HTTPRequest) throws -> HTTPResponse {
        try handle.prepare(request)
        return try handle.result(curl_easy_perform(handle.raw)).get()
    }
}

@available(*, unavailable)
extension CurlEasyClient: Sendable {}

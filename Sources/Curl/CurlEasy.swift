internal import CCurl
import Foundation

/// Performs HTTP requests with libcurl's easy interface, one at a time, on the calling thread.
///
/// Reusing one client reuses its connections (libcurl keeps them in the easy handle's cache).
///
/// ### Threading
/// One thread at a time: the type is not `Sendable`. Calls block; never call them on Swift's cooperative pool.
///
/// ### Ownership
/// The client owns one `CURL` easy handle, created in `init` and cleaned up in `deinit`. Request header lists and the
/// error buffer live for the duration of ``perform(_:)``.
///
/// Related libcurl documentation: https://curl.se/libcurl/c/libcurl-easy.html
public final class CurlEasyClient {
    private let handle: UnsafeMutableRawPointer

    /// Initialises libcurl globally. Call once from `main` before starting threads.
    public static func globalInit() {
        // > This function is not thread safe. You must not call it when any other thread in the program is running.
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }

    public init() {
        guard let handle = curl_easy_init() else { preconditionFailure("curl_easy_init failed: out of memory") }
        self.handle = handle
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    /// Sends a request and waits for its response.
    ///
    /// - Throws: ``CurlError`` when no response arrived (timeouts, refused or dropped connections).
    public func perform(_ request: HTTPRequest) throws -> HTTPResponse {
        curl_easy_reset(handle)
        let box = ResponseBox()
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        var headerList: UnsafeMutablePointer<curl_slist>?
        for header in request.headers {
            headerList = curl_slist_append(headerList, "\(header.name): \(header.value)")
        }
        // An empty Expect header stops libcurl from waiting for "100 Continue" on larger bodies.
        headerList = curl_slist_append(headerList, "Expect:")
        defer { curl_slist_free_all(headerList) }

        return try errorBuffer.withUnsafeMutableBufferPointer { errorPointer in
            func set(_ option: CURLoption, _ value: Int) throws {
                try check(ccurl_easy_setopt_long(handle, option, value), "setopt")
            }
            func set(_ option: CURLoption, pointer: UnsafeRawPointer?) throws {
                try check(ccurl_easy_setopt_ptr(handle, option, pointer), "setopt")
            }
            func check(_ code: CURLcode, _ operation: String) throws {
                guard code == CURLE_OK else {
                    throw CurlError(
                        code: code,
                        detail: String(cString: errorPointer.baseAddress!),
                        operation: operation
                    )
                }
            }
            try set(CURLOPT_ERRORBUFFER, pointer: errorPointer.baseAddress)
            try set(CURLOPT_NOSIGNAL, 1)
            try set(CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout * 1000))
            try set(CURLOPT_TIMEOUT_MS, Int(request.totalTimeout * 1000))
            try set(CURLOPT_PROTOCOLS_STR, pointer: "http,https")
            try request.url.withCString { try set(CURLOPT_URL, pointer: $0) }
            try request.method.withCString { try set(CURLOPT_CUSTOMREQUEST, pointer: $0) }
            try set(CURLOPT_HTTPHEADER, pointer: headerList)
            if let body = request.body {
                try set(CURLOPT_POSTFIELDSIZE_LARGE, body.count)
                // COPYPOSTFIELDS copies the bytes, so they need not outlive this call.
                try body.withUnsafeBytes {
                    try set(CURLOPT_COPYPOSTFIELDS, pointer: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1))
                }
            }
            let userdata = Unmanaged.passUnretained(box).toOpaque()
            try check(ccurl_easy_setopt_write_callback(handle, CURLOPT_WRITEFUNCTION, curlWriteBody), "setopt")
            try set(CURLOPT_WRITEDATA, pointer: userdata)
            try check(ccurl_easy_setopt_write_callback(handle, CURLOPT_HEADERFUNCTION, curlWriteHeader), "setopt")
            try set(CURLOPT_HEADERDATA, pointer: userdata)

            try withExtendedLifetime(box) {
                try check(curl_easy_perform(handle), "perform")
            }
            var status = 0
            try check(ccurl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status), "getinfo")
            return HTTPResponse(status: status, headers: box.headers, body: box.body)
        }
    }
}

@available(*, unavailable)
extension CurlEasyClient: Sendable {}

/// Collects one response; the callbacks reach it through their userdata pointer.
final class ResponseBox {
    var body = Data()
    var headers: [String: String] = [:]

    func appendHeaderLine(_ line: String) {
        // A new status line (after a redirect or 100 Continue) starts a new header block.
        if line.hasPrefix("HTTP/") {
            headers.removeAll()
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        headers[name] = value
    }
}

private func curlWriteBody(
    _ data: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ userdata: UnsafeMutableRawPointer?
) -> Int {
    guard let data, let userdata else { return 0 }
    let box = Unmanaged<ResponseBox>.fromOpaque(userdata).takeUnretainedValue()
    box.body.append(UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: size * count)
    return size * count
}

private func curlWriteHeader(
    _ data: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ userdata: UnsafeMutableRawPointer?
) -> Int {
    guard let data, let userdata else { return 0 }
    let box = Unmanaged<ResponseBox>.fromOpaque(userdata).takeUnretainedValue()
    let bytes = UnsafeRawBufferPointer(start: data, count: size * count)
    box.appendHeaderLine(String(decoding: bytes, as: UTF8.self))
    return size * count
}

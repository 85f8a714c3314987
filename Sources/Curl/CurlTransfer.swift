internal import CCurl
import Foundation

/// One request configured on an easy handle, with everything libcurl points at kept alive alongside it.
///
/// ### Ownership
/// The transfer does not own the easy handle (a client or a driver's pool does), but it owns the header list, the
/// error buffer and the response box, and frees them in `deinit`, after libcurl is done with the handle.
final class CurlTransfer {
    let handle: UnsafeMutableRawPointer
    let box = ResponseBox()
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private var headerList: UnsafeMutablePointer<curl_slist>?

    /// Resets `handle` and configures it for `request`.
    ///
    /// - Throws: ``CurlError`` when libcurl refuses an option (for example an unsupported protocol).
    init(handle: UnsafeMutableRawPointer, request: HTTPRequest) throws {
        self.handle = handle
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        curl_easy_reset(handle)
        for header in request.headers {
            headerList = curl_slist_append(headerList, "\(header.name): \(header.value)")
        }
        // An empty Expect header stops libcurl from waiting for "100 Continue" on larger bodies.
        headerList = curl_slist_append(headerList, "Expect:")

        try set(CURLOPT_ERRORBUFFER, pointer: errorBuffer)
        // Signals would interrupt other threads' work; timeouts work without them with the threaded resolver.
        try set(CURLOPT_NOSIGNAL, 1)
        try set(CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout * 1000))
        try set(CURLOPT_TIMEOUT_MS, Int(request.totalTimeout * 1000))
        try set(CURLOPT_PROTOCOLS_STR, string: "http,https")
        try set(CURLOPT_URL, string: request.url)
        try set(CURLOPT_CUSTOMREQUEST, string: request.method)
        try set(CURLOPT_HTTPHEADER, pointer: headerList)
        if let body = request.body {
            try set(CURLOPT_POSTFIELDSIZE_LARGE, body.count)
            // COPYPOSTFIELDS copies the bytes, so they need not outlive this call.
            try body.withUnsafeBytes { bytes in
                try set(CURLOPT_COPYPOSTFIELDS, pointer: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1))
            }
        }
        let userdata = Unmanaged.passUnretained(box).toOpaque()
        try check(ccurl_easy_setopt_write_callback(handle, CURLOPT_WRITEFUNCTION, curlWriteBody))
        try set(CURLOPT_WRITEDATA, pointer: userdata)
        try check(ccurl_easy_setopt_write_callback(handle, CURLOPT_HEADERFUNCTION, curlWriteHeader))
        try set(CURLOPT_HEADERDATA, pointer: userdata)
    }

    deinit {
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
    }

    /// The response, or the error `code` stands for.
    func result(_ code: CURLcode) -> Result<HTTPResponse, CurlError> {
        guard code == CURLE_OK else { return .failure(error(code, "perform")) }
        var status = 0
        let info = ccurl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        guard info == CURLE_OK else { return .failure(error(info, "getinfo")) }
        return .success(HTTPResponse(status: status, headers: box.headers, body: box.body))
    }

    private func error(_ code: CURLcode, _ operation: String) -> CurlError {
        CurlError(code: code, detail: String(cString: errorBuffer), operation: operation)
    }

    private func check(_ code: CURLcode) throws {
        guard code == CURLE_OK else { throw error(code, "setopt") }
    }

    private func set(_ option: CURLoption, _ value: Int) throws {
        try check(ccurl_easy_setopt_long(handle, option, value))
    }

    private func set(_ option: CURLoption, pointer: UnsafeRawPointer?) throws {
        try check(ccurl_easy_setopt_ptr(handle, option, pointer))
    }

    /// libcurl copies string options (all but POSTFIELDS), so the C string may die after the call.
    private func set(_ option: CURLoption, string: String) throws {
        try string.withCString { try set(option, pointer: $0) }
    }
}

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

internal import CCurl
import Foundation

/// One easy handle, reused request after request, with everything libcurl points at kept alive beside it.
///
/// Options that never change (callbacks, error buffer, signals, protocols) are set once when the handle is made; a
/// request sets only what differs from the previous one, so a reused handle costs a few `setopt` calls instead of a
/// `curl_easy_reset` and a dozen options.
///
/// ### Ownership
/// The handle owns the `CURL` easy handle, its header list, error buffer, body buffer and response box, and frees
/// them in `deinit`. It must not be deallocated while a multi handle still holds it (the driver removes it first).
///
/// ### Threading
/// One thread at a time: the client or driver thread that owns it.
final class CurlHandle {
    let raw: UnsafeMutableRawPointer
    let box = ResponseBox()
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var mailRecipients: UnsafeMutablePointer<curl_slist>?
    /// The request body: `CURLOPT_POSTFIELDS` points into it for a ``HTTPRequest/repeatable`` request, and the read
    /// callback hands it to libcurl otherwise.
    ///
    /// With `CURLOPT_POSTFIELDS`, libcurl (before 8.16, which has `CURLOPT_FORBID_RETRY_ON_REUSE`) sends a request
    /// again on a fresh connection, unasked, when a reused one closes before any answer, although the server may have
    /// acted on it: a second SMS through Twilio. A read callback without a seek callback cannot be rewound, so the
    /// transfer fails instead (`CURLE_SEND_FAIL_REWIND`, with the request sent) and the dispatcher decides. It costs
    /// a second write per request (headers, then body), so requests a repeat cannot harm keep the single write.
    private var body: UnsafeMutableRawBufferPointer
    private var current = Settings()

    /// What the previous request set, so that an equal value is not set again.
    private struct Settings: Equatable {
        var url = ""
        var method = "GET"
        var connectTimeout = -1.0
        var totalTimeout = -1.0
        var mail = false
    }

    /// The most body buffer a handle keeps between requests, beyond what the current one needs.
    static let bodyBytesKept = 64 * 1024

    init() {
        guard let raw = curl_easy_init() else { preconditionFailure("curl_easy_init failed: out of memory") }
        self.raw = raw
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        body = .allocate(byteCount: 4096, alignment: 1)
        let userdata = Unmanaged.passUnretained(box).toOpaque()
        // These cannot fail for an http build of libcurl; a failure is a broken installation.
        for code in [
            ccurl_easy_setopt_ptr(raw, CURLOPT_ERRORBUFFER, errorBuffer),
            // Signals would interrupt other threads' work; timeouts work without them with the threaded resolver.
            ccurl_easy_setopt_long(raw, CURLOPT_NOSIGNAL, 1),
            "http,https,smtp,smtps".withCString { ccurl_easy_setopt_ptr(raw, CURLOPT_PROTOCOLS_STR, $0) },
            ccurl_easy_setopt_write_callback(raw, CURLOPT_WRITEFUNCTION, curlWriteBody),
            ccurl_easy_setopt_ptr(raw, CURLOPT_WRITEDATA, userdata),
            ccurl_easy_setopt_write_callback(raw, CURLOPT_HEADERFUNCTION, curlWriteHeader),
            ccurl_easy_setopt_ptr(raw, CURLOPT_HEADERDATA, userdata),
            ccurl_easy_setopt_write_callback(raw, CURLOPT_READFUNCTION, curlReadBody),
            ccurl_easy_setopt_ptr(raw, CURLOPT_READDATA, userdata),
        ] {
            precondition(code == CURLE_OK, "libcurl refused a basic option: \(code.rawValue)")
        }
    }

    deinit {
        curl_easy_cleanup(raw)
        curl_slist_free_all(headerList)
        curl_slist_free_all(mailRecipients)
        errorBuffer.deallocate()
        body.deallocate()
    }

    /// Configures the handle for `request`.
    ///
    /// - Throws: ``CurlError`` when libcurl refuses an option (for example an unsupported protocol).
    func prepare(_ request: HTTPRequest) throws {
        if let unsafe = request.unsafePart { throw CurlError(unsafeRequest: unsafe) }
        box.reset()
        errorBuffer[0] = 0
        curl_slist_free_all(headerList)
        headerList = nil
        for header in request.headers {
            headerList = curl_slist_append(headerList, "\(header.name): \(header.value)")
        }
        // An empty Expect header stops libcurl from waiting for "100 Continue" on larger bodies.
        headerList = curl_slist_append(headerList, "Expect:")
        try set(CURLOPT_HTTPHEADER, pointer: headerList)

        if request.url != current.url {
            try set(CURLOPT_URL, string: request.url)
            current.url = request.url
        }
        if request.connectTimeout != current.connectTimeout {
            try set(CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout * 1000))
            current.connectTimeout = request.connectTimeout
        }
        if request.totalTimeout != current.totalTimeout {
            try set(CURLOPT_TIMEOUT_MS, Int(request.totalTimeout * 1000))
            current.totalTimeout = request.totalTimeout
        }
        if let mail = request.mail {
            try prepareMail(mail, body: request.body ?? Data())
            return
        }
        if current.mail {
            try set(CURLOPT_UPLOAD, 0)
            try set(CURLOPT_MAIL_RCPT, pointer: nil)
            try set(CURLOPT_USERNAME, pointer: nil)
            try set(CURLOPT_PASSWORD, pointer: nil)
            try set(CURLOPT_USE_SSL, Int(CURLUSESSL_NONE.rawValue))
            current.mail = false
            current.method = ""
        }
        if let data = request.body {
            // A handle that once carried a batch of a thousand emails would otherwise keep its half a megabyte for
            // good, and with SMS keeping every handle busy, each one in turn carries a batch: 196 MiB of buffers.
            if data.count > body.count || body.count > max(Self.bodyBytesKept, data.count * 4) {
                body.deallocate()
                body = .allocate(byteCount: max(data.count, 4096), alignment: 1)
            }
            data.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: body[..<data.count]))
            try set(CURLOPT_POSTFIELDSIZE_LARGE, data.count)
            if request.repeatable {
                // One write with the headers: the cheaper way, for a server that drops a repeat anyway.
                try set(CURLOPT_POSTFIELDS, pointer: body.baseAddress)
            } else {
                box.upload = UnsafeRawBufferPointer(rebasing: body[..<data.count])
                try set(CURLOPT_POSTFIELDS, pointer: nil)
                try set(CURLOPT_POST, 1)
            }
        } else {
            try set(CURLOPT_HTTPGET, 1)
        }
        if request.method != current.method {
            // POST and GET follow from the body; any other method is sent as a custom request line.
            if request.method == "POST" || request.method == "GET" {
                try set(CURLOPT_CUSTOMREQUEST, pointer: nil)
            } else {
                try set(CURLOPT_CUSTOMREQUEST, string: request.method)
            }
            current.method = request.method
        }
    }

    /// Sets up an SMTP submission: the envelope, TLS, credentials, and the message through the read callback (which
    /// cannot be rewound: a mail server does not drop a repeated message).
    private func prepareMail(_ mail: MailEnvelope, body data: Data) throws {
        current.mail = true
        current.method = ""
        try set(CURLOPT_MAIL_FROM, string: "<\(mail.from)>")
        curl_slist_free_all(mailRecipients)
        mailRecipients = nil
        for recipient in mail.recipients { mailRecipients = curl_slist_append(mailRecipients, "<\(recipient)>") }
        try set(CURLOPT_MAIL_RCPT, pointer: mailRecipients)
        try set(CURLOPT_USE_SSL, Int((mail.requireTLS ? CURLUSESSL_ALL : CURLUSESSL_NONE).rawValue))
        if let username = mail.username { try set(CURLOPT_USERNAME, string: username) }
        if let password = mail.password { try set(CURLOPT_PASSWORD, string: password) }
        if data.count > body.count || body.count > max(Self.bodyBytesKept, data.count * 4) {
            body.deallocate()
            body = .allocate(byteCount: max(data.count, 4096), alignment: 1)
        }
        data.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: body[..<data.count]))
        box.upload = UnsafeRawBufferPointer(rebasing: body[..<data.count])
        try set(CURLOPT_UPLOAD, 1)
        try check(ccurl_easy_setopt_off_t(raw, CURLOPT_INFILESIZE_LARGE, curl_off_t(data.count)))
    }

    /// The response, or the error `code` stands for.
    func result(_ code: CURLcode) -> Result<HTTPResponse, CurlError> {
        // A mail server's refusal (4xx or 5xx to MAIL, RCPT or the message) ends the transfer with an error code, yet
        // it is an answer: the message was not taken, and the reply code says whether to try again.
        if code != CURLE_OK, current.mail {
            var reply = 0
            if ccurl_easy_getinfo_long(raw, CURLINFO_RESPONSE_CODE, &reply) == CURLE_OK, reply >= 400 {
                let detail = Data(String(cString: errorBuffer).utf8)
                return .success(HTTPResponse(status: reply, headers: [:], body: detail))
            }
        }
        guard code == CURLE_OK else {
            var failure = error(code, "perform")
            // A failed rewind means libcurl wanted to send the body a second time: the first went out.
            failure.requestSent = requestSent || code == CURLE_SEND_FAIL_REWIND
            return .failure(failure)
        }
        var status = 0
        let info = ccurl_easy_getinfo_long(raw, CURLINFO_RESPONSE_CODE, &status)
        guard info == CURLE_OK else { return .failure(error(info, "getinfo")) }
        var seconds = 0.0
        _ = ccurl_easy_getinfo_double(raw, CURLINFO_TOTAL_TIME, &seconds)
        return .success(HTTPResponse(status: status, headers: box.headers, body: box.body, totalSeconds: seconds))
    }

    /// Whether libcurl has started to send this request's body: before that, the server cannot have acted on it (it
    /// waits for the whole body), and sending it again is safe with any API. A request whose body does not go through
    /// the read callback (no body, or a repeatable one) counts as sent.
    ///
    /// Read from the body callback rather than `CURLINFO_REQUEST_SIZE`, which a reused handle reports from its
    /// previous transfer until the next one gets going.
    var requestSent: Bool { box.upload.count == 0 || box.uploaded > 0 }

    private func error(_ code: CURLcode, _ operation: String) -> CurlError {
        CurlError(code: code, detail: String(cString: errorBuffer), operation: operation)
    }

    private func check(_ code: CURLcode) throws {
        guard code == CURLE_OK else { throw error(code, "setopt") }
    }

    private func set(_ option: CURLoption, _ value: Int) throws {
        try check(ccurl_easy_setopt_long(raw, option, value))
    }

    private func set(_ option: CURLoption, pointer: UnsafeRawPointer?) throws {
        try check(ccurl_easy_setopt_ptr(raw, option, pointer))
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
    /// The request body (owned by the handle) and how much of it libcurl has read.
    var upload = UnsafeRawBufferPointer(start: nil, count: 0)
    var uploaded = 0

    func reset() {
        body.removeAll(keepingCapacity: true)
        headers.removeAll(keepingCapacity: true)
        upload = UnsafeRawBufferPointer(start: nil, count: 0)
        uploaded = 0
    }

    /// Adds one header line as libcurl hands it over (with its CRLF), without building intermediate strings.
    func appendHeaderLine(_ line: UnsafeRawBufferPointer) {
        // A new status line (after a redirect or 100 Continue) starts a new header block.
        if line.starts(with: "HTTP/".utf8) {
            headers.removeAll(keepingCapacity: true)
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        var start = colon + 1
        var end = line.count
        while start < end, isSpace(line[start]) { start += 1 }
        while end > start, isSpace(line[end - 1]) { end -= 1 }
        let name = String(unsafeUninitializedCapacity: colon) { buffer in
            for index in 0..<colon {
                let byte = line[index]
                buffer[index] = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            }
            return colon
        }
        headers[name] = String(decoding: UnsafeRawBufferPointer(rebasing: line[start..<end]), as: UTF8.self)
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

private func curlReadBody(
    _ buffer: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ userdata: UnsafeMutableRawPointer?
) -> Int {
    guard let buffer, let userdata else { return 0 }
    let box = Unmanaged<ResponseBox>.fromOpaque(userdata).takeUnretainedValue()
    let length = min(size * count, box.upload.count - box.uploaded)
    guard length > 0, let base = box.upload.baseAddress else { return 0 }
    UnsafeMutableRawPointer(buffer).copyMemory(from: base + box.uploaded, byteCount: length)
    box.uploaded += length
    return length
}

private func curlWriteHeader(
    _ data: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ userdata: UnsafeMutableRawPointer?
) -> Int {
    guard let data, let userdata else { return 0 }
    let box = Unmanaged<ResponseBox>.fromOpaque(userdata).takeUnretainedValue()
    box.appendHeaderLine(UnsafeRawBufferPointer(start: data, count: size * count))
    return size * count
}

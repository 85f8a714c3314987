import Dispatch
import Foundation
import Hummingbird
import Logging
import NIOCore
import Signing
import Storage
import Synchronization

/// A report download that moved nothing for the listener's write timeout.
struct ReportStalled: Error, CustomStringConvertible {
    var description: String { "the client took nothing for the write timeout" }
}

/// `GET /reports/{send}?expires=…&signature=…`: the failure report behind the merchant notice's link (rule 9).
extension Endpoints {
    /// Chunks of CSV read ahead of what the client has taken: bounds memory whatever the report's size.
    static let reportChunksAhead = 4
    static let reportChunkBytes = 64 * 1024

    func report(_ request: Request) async throws -> Response {
        guard let signer = dependencies.reportLinks else {
            return Self.text(.notFound, "reports are not served here: links.public_base_url is not set\n")
        }
        let installation = try await database.run { try Schema.installationID($0) }
        let sendID: Int64
        do {
            sendID = try signer.verify(request.uri.description, installation: installation)
        } catch let refusal as ReportLinkSigner.Refusal {
            switch refusal {
            case .expired(let date):
                return Self.text(.gone, Self.expiredPage(date), type: "text/html; charset=utf-8")
            case .malformed, .badSignature:
                return Self.text(.forbidden, "This report link is not valid: it is incomplete or was altered.\n")
            }
        }
        let ended = try await database.run { connection -> Bool? in
            try SendStore(connection: connection).send(id: sendID).map { $0.status.hasEnded }
        }
        guard let ended else { return Self.text(.notFound, "send \(sendID) does not exist\n") }
        guard ended else {
            return Self.text(.notFound, "send \(sendID) has not ended; its report comes when it does\n")
        }
        let headers: HTTPFields = [
            .contentType: "text/csv; charset=utf-8",
            .contentDisposition: "attachment; filename=\"coupond-send-\(sendID)-failures.csv\"",
            .cacheControl: "private, no-store",
        ]
        if request.method == .head { return Response(status: .ok, headers: headers) }
        // Each download holds a thread and a database connection while its client reads: a bounded number at once.
        let admitted = reportDownloads.withLock { active -> Bool in
            guard active < dependencies.limits.maxReportDownloads else { return false }
            active += 1
            return true
        }
        guard admitted else {
            logger.notice("report download refused: the listener is at its cap of downloads")
            var response = Self.text(.serviceUnavailable, "Too many report downloads at once; try again shortly.\n")
            response.headers[.retryAfter] = "30"
            return response
        }
        return Response(status: .ok, headers: headers, body: reportBody(sendID: sendID))
    }

    /// The CSV, streamed: a byte-order mark (so that spreadsheets read it as UTF-8), the header, then the rows as COPY
    /// yields them, at most ``reportChunksAhead`` chunks ahead of the client.
    private func reportBody(sendID: Int64) -> ResponseBody {
        let database = database
        let logger = logger
        return ResponseBody { [self] writer in
            defer { reportDownloads.withLock { $0 -= 1 } }
            let (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
            let credits = DispatchSemaphore(value: Self.reportChunksAhead)
            let abandoned = Atomic<Bool>(false)
            let producer = Task {
                do {
                    try await database.runOnOwnThread { connection in
                        var chunk = "\u{FEFF}" + FailureReport.csvLine(FailureReport.header)
                        func flush() throws {
                            credits.wait()
                            if abandoned.load(ordering: .acquiring) { throw CancellationError() }
                            continuation.yield(ByteBuffer(string: chunk))
                            chunk = ""
                        }
                        try FailureReport.rows(sendID: sendID, on: connection) { row in
                            chunk += FailureReport.csvLine(row)
                            if chunk.utf8.count >= Self.reportChunkBytes { try flush() }
                        }
                        try flush()
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            // A download that moves nothing for the write timeout, wherever it is stuck, gives its thread and its
            // database connection back: the stream ends with an error, and the connection with it.
            let progress = Atomic<Int64>(Self.milliseconds())
            let timeout = Int64(dependencies.limits.writeTimeout * 1000)
            let watchdog = Task {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(min(1000, max(100, timeout / 4))))
                    if Self.milliseconds() - progress.load(ordering: .acquiring) > timeout {
                        continuation.finish(throwing: ReportStalled())
                        return
                    }
                }
            }
            defer { watchdog.cancel() }
            do {
                for try await chunk in chunks {
                    try await writer.write(chunk)
                    progress.store(Self.milliseconds(), ordering: .releasing)
                    credits.signal()
                }
                try await writer.finish(nil)
            } catch {
                // The client went away: let the reading thread stop at its next chunk.
                abandoned.store(true, ordering: .releasing)
                for _ in 0...Self.reportChunksAhead { credits.signal() }
                producer.cancel()
                logger.info("report download ended early", metadata: ["send.id": "\(sendID)", "error": "\(error)"])
                throw error
            }
        }
    }

    /// A monotonic time in milliseconds, for the download watchdog.
    static func milliseconds() -> Int64 {
        return Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
    }

    /// The page a merchant sees after the 7 days.
    static func expiredPage(_ expiry: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
            <title>Report link expired</title></head>
            <body><h1>This report link has expired</h1>
            <p>Failure reports can be downloaded for 7 days after a send ends. This link expired on \
            \(formatter.string(from: expiry)).</p>
            <p>Your platform's support can still produce the report.</p></body></html>

            """
    }
}

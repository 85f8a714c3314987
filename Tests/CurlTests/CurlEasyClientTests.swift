import Curl
import FlyingFox
import FlyingSocks
import Foundation
import Testing

/// libcurl against a real HTTP server on loopback.
@Suite struct CurlEasyClientTests {
    /// Starts a server on 127.0.0.1 and a free port, runs `body` with its base URL, then stops it.
    static func withServer(
        _ configure: (HTTPServer) async -> Void,
        _ body: @escaping @Sendable (String) throws -> Void
    ) async throws {
        let server = HTTPServer(address: try sockaddr_in.inet(ip4: "127.0.0.1", port: 0), timeout: 30)
        await configure(server)
        let task = Task { try await server.run() }
        defer { task.cancel() }
        try await server.waitUntilListening()
        guard case .ip4(_, port: let port) = await server.listeningAddress else {
            Issue.record("server is not listening on IPv4")
            return
        }
        let base = "http://127.0.0.1:\(port)"
        // libcurl blocks: run it on a thread of its own, off the cooperative pool.
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread {
                do {
                    try body(base)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
        await server.stop(timeout: 1)
    }

    @Test func postsABodyAndReadsStatusHeadersAndBody() async throws {
        try await Self.withServer({ server in
            await server.appendRoute("POST /echo") { request in
                let body = try await request.bodyData
                return HTTPResponse(
                    statusCode: .created,
                    headers: HTTPHeaders([HTTPHeader("X-Seen-Auth"): request.headers[HTTPHeader("Authorization")] ?? ""]
                    ),
                    body: body
                )
            }
        }) { base in
            let client = CurlEasyClient()
            let response = try client.perform(
                HTTPRequest(
                    method: "POST",
                    url: base + "/echo",
                    headers: [("Authorization", "Bearer secret"), ("Content-Type", "application/json")],
                    body: Data(#"{"to":"ann@mail.example"}"#.utf8)
                )
            )
            #expect(response.status == 201)
            #expect(String(decoding: response.body, as: UTF8.self) == #"{"to":"ann@mail.example"}"#)
            #expect(response.headers["x-seen-auth"] == "Bearer secret")
            // A second request on the same client reuses the handle.
            let again = try client.perform(HTTPRequest(method: "POST", url: base + "/echo", body: Data("x".utf8)))
            #expect(again.status == 201)
        }
    }

    @Test func anErrorStatusIsAResponseNotAnError() async throws {
        try await Self.withServer({ server in
            await server.appendRoute("POST /busy") { _ in
                HTTPResponse(statusCode: .tooManyRequests, headers: HTTPHeaders([HTTPHeader("Retry-After"): "7"]))
            }
        }) { base in
            let response = try CurlEasyClient().perform(HTTPRequest(method: "POST", url: base + "/busy", body: Data()))
            #expect(response.status == 429)
            #expect(response.headers["retry-after"] == "7")
        }
    }

    @Test func aSlowServerTimesOut() async throws {
        try await Self.withServer({ server in
            await server.appendRoute("GET /slow") { _ in
                try await Task.sleep(for: .seconds(3))
                return HTTPResponse(statusCode: .ok)
            }
        }) { base in
            let error = #expect(throws: CurlError.self) {
                try CurlEasyClient().perform(HTTPRequest(url: base + "/slow", totalTimeout: 0.3))
            }
            #expect(error?.isTimeout == true)
        }
    }

    @Test func aRefusedConnectionIsACurlErrorWithoutTheURL() throws {
        let error = #expect(throws: CurlError.self) {
            try CurlEasyClient().perform(
                HTTPRequest(url: "http://127.0.0.1:1/secret-path?token=abc", connectTimeout: 1)
            )
        }
        #expect(error?.operation == "perform")
        #expect(error?.description.contains("token=abc") == false)
    }
}

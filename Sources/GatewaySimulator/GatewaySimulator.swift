import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import WireJSON

/// An HTTP server on loopback that speaks the gateways' APIs, records what it accepts and injects faults.
///
/// | route | API |
/// |---|---|
/// | `POST /webhook/email`, `POST /webhook/sms` | Coupond's generic JSON webhooks |
/// | `POST /v3/mail/send` | SendGrid v3 Mail Send |
/// | `POST /2010-04-01/Accounts/{sid}/Messages.json` | Twilio Messages |
/// | `GET /stats`, `GET /messages?limit=N`, `POST /reset` | what it saw |
/// | `GET /faults`, `PUT /faults` | the ``FaultPlan`` (JSON) |
///
/// Built on SwiftNIO's event loops so that it keeps well ahead of the daemon it tests.
public final class GatewaySimulator: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let ledger = SimulatorLedger()

    /// The port it listens on.
    public let port: Int

    /// Binds and starts serving at once.
    ///
    /// - Parameters:
    ///   - host: the address to listen on; loopback unless told otherwise.
    ///   - port: 0 picks a free port (see ``port``).
    public init(host: String = "127.0.0.1", port: Int = 0, faults: FaultPlan = FaultPlan(), threads: Int = 2) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        ledger.plan = faults
        let ledger = self.ledger
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(SimulatorHandler(ledger: ledger))
                    }
                }
                .bind(host: host, port: port)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.port = channel.localAddress?.port ?? port
    }

    /// Blocks until the server is stopped.
    public func wait() throws {
        try channel.closeFuture.wait()
    }

    /// Stops listening, closes connections and ends its threads.
    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    public var stats: SimulatorStats { ledger.stats }

    public func messages(limit: Int? = nil) -> [AcceptedMessage] { ledger.messages(limit: limit) }

    public var faults: FaultPlan {
        get { ledger.plan }
        set { ledger.plan = newValue }
    }

    public func reset() { ledger.reset() }
}

/// A response to write, or a connection to drop.
enum SimulatorReply {
    case respond(status: HTTPResponseStatus, headers: [(String, String)], body: [UInt8])
    case drop

    /// A JSON answer written by `write`. Answers to messages are written byte by byte, as the daemon writes its
    /// requests: with Foundation's serialisation the simulator cost more per message than the daemon it tests.
    static func json(status: HTTPResponseStatus = .ok, _ write: (inout JSONBytes) -> Void) -> SimulatorReply {
        var body = JSONBytes(capacity: 96)
        write(&body)
        return .respond(status: status, headers: [("Content-Type", "application/json")], body: body.bytes)
    }

    /// `{"error": message}`, 400 unless told otherwise.
    static func error(_ message: String, status: HTTPResponseStatus = .badRequest) -> SimulatorReply {
        json(status: status) { $0.object(["error": message]) }
    }

    /// The answer of the inspection routes (`/stats`, `/messages`, `/faults`), where Codable's convenience wins.
    static func encoded(_ value: some Encodable) -> SimulatorReply {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(value)) ?? Data()
        return .respond(status: .ok, headers: [("Content-Type", "application/json")], body: Array(body))
    }
}

/// Reads one HTTP request at a time from a connection and answers it, possibly late or not at all.
final class SimulatorHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let ledger: SimulatorLedger
    private var head: HTTPRequestHead?
    private var body = Data()

    init(ledger: SimulatorLedger) {
        self.ledger = ledger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body.removeAll(keepingCapacity: true)
        case .body(let buffer):
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            guard let head else { return }
            self.head = nil
            let (reply, delay) = SimulatorRoutes.handle(head: head, body: body, ledger: ledger)
            if let delay {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(delay))) {
                    self.send(reply, keepAlive: head.isKeepAlive, context: context)
                }
            } else {
                send(reply, keepAlive: head.isKeepAlive, context: context)
            }
        }
    }

    private func send(_ reply: SimulatorReply, keepAlive: Bool, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        switch reply {
        case .drop:
            context.close(promise: nil)
        case .respond(let status, let extra, let data):
            var headers = HTTPHeaders(extra)
            headers.add(name: "Content-Length", value: String(data.count))
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                promise: nil
            )
            var buffer = context.channel.allocator.buffer(capacity: data.count)
            buffer.writeBytes(data)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        }
    }
}

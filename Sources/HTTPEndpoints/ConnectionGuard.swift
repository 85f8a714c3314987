import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the HTTP listener allows a connection, so that nobody who connects can hold it open: `coupond run` may face the
/// open internet, and even behind a proxy a client's slowness must not become the daemon's.
public struct ListenerLimits: Sendable {
    /// Open connections at most. At the cap, a new connection takes the place of the one that has waited longest
    /// without sending a whole request head; when every connection is busy with a request, the new one is closed.
    public var maxConnections = 512
    /// Open connections from one address at most; 0 for no such cap (behind a proxy every client has its address).
    public var maxConnectionsPerAddress = 0
    /// Seconds a new connection has to send a whole request head (slow headers are closed).
    public var headerTimeout = 10.0
    /// Seconds a request has, from its head, to send its whole body.
    public var bodyTimeout = 30.0
    /// Seconds a kept-alive connection may wait for its next request head.
    public var idleTimeout = 30.0
    /// Seconds a response may wait on a client that takes nothing (a stalled download) before the connection closes.
    public var writeTimeout = 30.0
    /// Failure-report downloads at once; more get `503` with `Retry-After`.
    public var maxReportDownloads = 4

    public init() {}
}

/// The connections the listener holds, for its caps: how many in all and per address, and which are waiting for a
/// request head and since when, so that the longest waiting can make room.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        let channel: any Channel
        let address: String
        /// Since when the connection has waited for a whole request head; `nil` while a request is in progress.
        var waitingSince: NIODeadline?
    }

    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var perAddress: [String: Int] = [:]
    }

    private let limits: ListenerLimits
    private let state = Mutex(State())

    init(limits: ListenerLimits) { self.limits = limits }

    enum Admission {
        case admitted
        /// Admitted in place of this connection, which the caller closes.
        case admittedInPlaceOf(any Channel)
        case refused(String)
    }

    func admit(_ channel: any Channel, address: String) -> Admission {
        state.withLock { state in
            if limits.maxConnectionsPerAddress > 0,
                state.perAddress[address, default: 0] >= limits.maxConnectionsPerAddress
            {
                return .refused("address at its connection cap")
            }
            var evicted: (any Channel)?
            if state.entries.count >= limits.maxConnections {
                guard
                    let oldest = state.entries.filter({ $0.value.waitingSince != nil })
                        .min(by: { $0.value.waitingSince! < $1.value.waitingSince! })
                else { return .refused("listener at its connection cap, every connection busy") }
                evicted = oldest.value.channel
                remove(oldest.key, from: &state)
            }
            state.entries[ObjectIdentifier(channel)] = Entry(channel: channel, address: address, waitingSince: .now())
            state.perAddress[address, default: 0] += 1
            return evicted.map { .admittedInPlaceOf($0) } ?? .admitted
        }
    }

    func setWaiting(_ channel: any Channel, _ waiting: Bool) {
        state.withLock { $0.entries[ObjectIdentifier(channel)]?.waitingSince = waiting ? .now() : nil }
    }

    func remove(_ channel: any Channel) {
        state.withLock { remove(ObjectIdentifier(channel), from: &$0) }
    }

    var count: Int { state.withLock { $0.entries.count } }

    private func remove(_ id: ObjectIdentifier, from state: inout State) {
        guard let entry = state.entries.removeValue(forKey: id) else { return }
        let left = state.perAddress[entry.address, default: 1] - 1
        state.perAddress[entry.address] = left > 0 ? left : nil
    }
}

/// Sits between the HTTP/1 decoder and Hummingbird's codec, where a request's version and keep-alive are still known,
/// and enforces ``ListenerLimits`` on one connection: deadlines for the request head, the body and the idle time
/// between requests, a close when a client stops taking a response, and a close after the answer to an HTTP/1.0 or
/// `Connection: close` request, or to a request whose body was not read (an early refusal: the unread bytes would
/// otherwise keep the socket half-closed for as long as the client likes).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let limits: ListenerLimits
    private let registry: ConnectionRegistry
    private let logger: Logger
    private var deadline: Scheduled<Void>?
    private var stall: Scheduled<Void>?
    private var keepAlive = true
    /// Whether the request being answered has been read to its end.
    private var requestRead = true
    /// Requests whose answer has not ended.
    private var unanswered = 0
    private var registered = false

    init(limits: ListenerLimits, registry: ConnectionRegistry, logger: Logger) {
        self.limits = limits
        self.registry = registry
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        if registered { registry.remove(context.channel) }
        registered = false
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            unanswered += 1
            keepAlive = head.isKeepAlive
            requestRead = false
            registry.setWaiting(context.channel, false)
            arm(context, after: limits.bodyTimeout, "request body not received in time")
        case .body:
            break
        case .end:
            requestRead = true
            deadline?.cancel()
            deadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        unanswered = max(0, unanswered - 1)
        if !keepAlive || !requestRead {
            // Nothing more will be read on this connection: close it once the answer is out, whole (not half-closed,
            // which would leave unread request bytes holding the socket).
            let written = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(data, promise: written)
            written.futureResult.assumeIsolated().whenComplete { result in
                promise?.completeWith(result)
                context.close(promise: nil)
            }
            return
        }
        context.write(data, promise: promise)
        if unanswered == 0 {
            registry.setWaiting(context.channel, true)
            arm(context, after: limits.idleTimeout, "idle")
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stall?.cancel()
            stall = nil
        } else if stall == nil {
            stall = context.eventLoop.assumeIsolated().scheduleTask(in: Self.amount(limits.writeTimeout)) {
                [weak self] in
                self?.logger.debug("closing an HTTP connection: the client took nothing for the write timeout")
                // Reset rather than close: a plain close would leave the unsent answer queued in the kernel, on a
                // socket nobody owns, for as long as the client keeps its window shut.
                guard let socket = context.channel as? any SocketOptionProvider else {
                    context.close(promise: nil)
                    return
                }
                socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).assumeIsolated()
                    .whenComplete { _ in context.close(promise: nil) }
            }
        }
        context.fireChannelWritabilityChanged()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard !registered else { return }
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        switch registry.admit(context.channel, address: address) {
        case .admitted:
            registered = true
        case .admittedInPlaceOf(let oldest):
            registered = true
            oldest.close(promise: nil)
        case .refused(let why):
            logger.debug("refusing an HTTP connection", metadata: ["reason": "\(why)"])
            context.close(promise: nil)
            return
        }
        arm(context, after: limits.headerTimeout, "request head not received in time")
    }

    private func arm(_ context: ChannelHandlerContext, after seconds: Double, _ reason: String) {
        deadline?.cancel()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: Self.amount(seconds)) { [weak self] in
            self?.logger.debug("closing an HTTP connection", metadata: ["reason": "\(reason)"])
            context.close(promise: nil)
        }
    }

    private func cancelTimers() {
        deadline?.cancel()
        deadline = nil
        stall?.cancel()
        stall = nil
    }

    private static func amount(_ seconds: Double) -> TimeAmount {
        .milliseconds(Int64(seconds * 1000))
    }
}

/// Hummingbird's HTTP/1 channel with a ``ConnectionGuard`` in front of its codec.
struct GuardedHTTP1Channel: ServerChildChannel {
    let inner: HTTP1Channel
    let limits: ListenerLimits
    let registry: ConnectionRegistry
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            // A fixed send buffer: left to autotuning, the kernel would take megabytes of an answer a client never
            // reads, the channel would never look stalled, and the write timeout would not see it.
            try channel.syncOptions?.setOption(ChannelOptions.socketOption(.so_sndbuf), value: Self.sendBuffer)
            let codec = try channel.pipeline.syncOperations.handler(type: HTTP1ToHTTPServerCodec.self)
            try channel.pipeline.syncOperations.addHandler(
                ConnectionGuard(limits: limits, registry: registry, logger: self.logger),
                position: .before(codec)
            )
            return value
        }
    }

    /// Bytes the kernel holds of an answer not yet taken: enough for a download at 2.5 MB/s over 100 ms.
    static let sendBuffer = 256 * 1024

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with ``ListenerLimits`` enforced on every connection.
    static func guardedHTTP1(limits: ListenerLimits, logger: Logger) -> HTTPServerBuilder {
        let registry = ConnectionRegistry(limits: limits)
        return HTTPServerBuilder { responder in
            GuardedHTTP1Channel(
                inner: HTTP1Channel(responder: responder),
                limits: limits,
                registry: registry,
                logger: logger
            )
        }
    }
}

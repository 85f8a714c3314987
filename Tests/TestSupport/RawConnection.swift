public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A plain TCP connection to a port on loopback, for tests that must behave as a slow, silent or hostile client would:
/// send part of a request, stop reading, or never send anything. No HTTP client lets one do that.
public final class RawConnection {
    private let socket: Int32

    /// Connects to `127.0.0.1:port`, from `source` when given (any 127.x address is this machine too), with a small
    /// receive buffer when `receiveBuffer` is set, so that a client that stops reading stalls the server soon.
    public init(port: Int, source: String? = nil, receiveBuffer: Int? = nil) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw HarnessError("socket: errno \(errno)") }
        if var size = receiveBuffer.map(Int32.init) {
            setsockopt(socket, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if let source {
            var local = Self.address(source, port: 0)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else {
                close(socket)
                throw HarnessError("bind \(source): errno \(errno)")
            }
        }
        var remote = Self.address("127.0.0.1", port: port)
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(socket)
            throw HarnessError("connect: errno \(errno)")
        }
    }

    deinit { close(socket) }

    private static func address(_ host: String, port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        return address
    }

    /// Writes `text`; `false` when the server has closed the connection.
    @discardableResult
    public func send(_ text: String) -> Bool { send(Data(text.utf8)) }

    @discardableResult
    public func send(_ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let sent = Glibc.send(socket, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if sent <= 0 { return false }
                offset += sent
            }
            return true
        }
    }

    /// Reads what arrives within `timeout` seconds, until the server closes or `until` is found in what was read.
    /// - Returns: the bytes read, and whether the server closed the connection (end of stream or reset).
    public func read(timeout: Double, until: String? = nil) -> (text: String, closed: Bool) {
        var received = Data()
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let wait = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
            guard poll(&poller, 1, wait) > 0 else { continue }
            let count = recv(socket, &buffer, buffer.count, 0)
            if count <= 0 { return (String(decoding: received, as: UTF8.self), true) }
            received.append(contentsOf: buffer[..<count])
            if let until, String(decoding: received, as: UTF8.self).contains(until) {
                return (String(decoding: received, as: UTF8.self), false)
            }
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    /// Whether the server resets or hangs up the connection within `timeout` seconds, without reading anything: a
    /// client that has stopped reading stays stopped.
    public func isDropped(within timeout: Double) -> Bool {
        var poller = pollfd(fd: socket, events: 0, revents: 0)
        guard poll(&poller, 1, Int32(timeout * 1000)) > 0 else { return false }
        return poller.revents & Int16(POLLERR | POLLHUP) != 0
    }

    /// Seconds until the server closes the connection, reading and dropping what it sends; `nil` if it is still open
    /// after `timeout`.
    public func secondsUntilClosed(timeout: Double) -> Double? {
        let start = Date()
        let (_, closed) = read(timeout: timeout)
        return closed ? Date().timeIntervalSince(start) : nil
    }
}

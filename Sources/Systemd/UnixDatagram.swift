#if canImport(Glibc)
    import Glibc
#endif

/// Sends one datagram to an `AF_UNIX` socket path; a leading `@` names the abstract namespace.
///
/// - Returns: `false` when the socket cannot be reached (the caller decides whether that matters).
func sendUnixDatagram(_ payload: [UInt8], to path: String) -> Bool {
    let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var pathBytes = Array(path.utf8)
    if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard pathBytes.count < capacity else { return false }
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
        for (index, byte) in pathBytes.enumerated() { buffer[index] = byte }
    }
    // Abstract names are exactly as long as given; paths include their terminating NUL.
    let length = MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes.first == 0 ? 0 : 1)
    let sent = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            payload.withUnsafeBytes { bytes in
                sendto(
                    descriptor,
                    bytes.baseAddress,
                    bytes.count,
                    Int32(MSG_NOSIGNAL),
                    socketAddress,
                    socklen_t(length)
                )
            }
        }
    }
    return sent == payload.count
}

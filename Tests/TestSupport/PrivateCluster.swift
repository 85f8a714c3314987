public import Foundation

/// A PostgreSQL cluster of its own in a temporary folder, for tests that restart the server.
///
/// As root the server runs as the `postgres` system user (PostgreSQL refuses root), like `scripts/lib.sh` does.
public final class PrivateCluster {
    public let folder: URL
    public let port: Int
    private let binaries: URL

    /// A libpq connection string for the cluster's `postgres` database.
    public var connectionString: String { "host=127.0.0.1 port=\(port) user=postgres dbname=postgres" }

    public init() throws {
        let versions = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")
            .sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        guard let newest = versions.last else { throw HarnessError("no PostgreSQL under /usr/lib/postgresql") }
        binaries = URL(fileURLWithPath: "/usr/lib/postgresql/\(newest)/bin")
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("coupond-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        if getuid() == 0 {
            try FileManager.default.setAttributes([.ownerAccountName: "postgres"], ofItemAtPath: folder.path)
        }
        port = try Self.freePort()
        try run("initdb", ["-D", folder.path + "/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
        try start()
    }

    deinit {
        try? run("pg_ctl", ["-D", folder.path + "/data", "-m", "immediate", "stop"])
        try? FileManager.default.removeItem(at: folder)
    }

    func start() throws {
        try run(
            "pg_ctl",
            [
                "-D", folder.path + "/data", "-l", folder.path + "/server.log", "-w", "-o",
                "-k \(folder.path) -c listen_addresses=127.0.0.1 -p \(port) -c fsync=off", "start",
            ]
        )
    }

    /// Restarts the server: every session is cut, as in a failover or an upgrade.
    public func restart() throws {
        try run("pg_ctl", ["-D", folder.path + "/data", "-m", "fast", "-w", "stop"])
        try start()
    }

    /// Runs a PostgreSQL tool to completion with posix_spawn and waitpid: Foundation's Process did not always reap
    /// `runuser` here, leaving the test waiting on a zombie.
    private func run(_ tool: String, _ arguments: [String]) throws {
        let command: [String]
        if getuid() == 0 {
            command =
                ["/usr/sbin/runuser", "-u", "postgres", "--", binaries.appendingPathComponent(tool).path] + arguments
        } else {
            command = [binaries.appendingPathComponent(tool).path] + arguments
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let arguments = command.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        let spawned = posix_spawn(&pid, command[0], &actions, nil, arguments, environ)
        guard spawned == 0 else { throw HarnessError("cannot start \(tool): error \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        guard status == 0 else {
            throw HarnessError("\(tool) \(command.dropFirst().joined(separator: " ")) failed with status \(status)")
        }
    }

    private static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(descriptor, socketAddress, length) == 0 && getsockname(descriptor, socketAddress, &length) == 0
            }
        }
        guard bound else { throw HarnessError("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

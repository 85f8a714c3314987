public import Foundation

/// A built product running in the background, with its output going to files in a folder.
public final class ChildProcess {
    public let process = Process()
    public let stdoutURL: URL
    public let stderrURL: URL

    /// Starts the built product `name` with `arguments`; environment values of `nil` remove a variable.
    public convenience init(_ name: String, _ arguments: [String], environment: [String: String?] = [:], folder: URL)
        throws
    {
        try self.init(executable: builtProduct(name), arguments, environment: environment, folder: folder)
    }

    /// Starts the program at `executable` (a test tool such as `scripts/smtp-sink.py`) with `arguments`.
    public init(executable: URL, _ arguments: [String], environment: [String: String?] = [:], folder: URL) throws {
        let tag = UUID().uuidString.prefix(8)
        let name = executable.lastPathComponent
        stdoutURL = folder.appendingPathComponent("\(name)-\(tag).out")
        stderrURL = folder.appendingPathComponent("\(name)-\(tag).err")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = executable
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        process.currentDirectoryURL = repositoryRoot
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    public var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Kills the process at once, as a crash would (`kill -9`).
    public func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Sends SIGTERM and waits up to `timeout` seconds; returns the exit status, or `nil` if it did not exit.
    public func terminate(timeout: Double = 30) -> Int32? {
        kill(process.processIdentifier, SIGTERM)
        return waitForExit(timeout: timeout)
    }

    public func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Waits until standard output contains `text`; returns the output then.
    public func waitForOutput(_ text: String, timeout: Double = 30) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let output = stdout
            if output.contains(text) { return output }
            if !process.isRunning { return nil }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` seconds pass.
public func eventually(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return try condition()
}

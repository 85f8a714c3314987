public import Foundation

/// The path of an executable this package builds, next to the running test binary.
public func builtProduct(_ name: String) -> URL {
    let candidates = [
        Bundle.main.executableURL?.deletingLastPathComponent(),
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        repositoryRoot.appendingPathComponent(".build/debug"),
    ].compactMap { $0 }
    for folder in candidates {
        let url = folder.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return candidates[0].appendingPathComponent(name)
}

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a built product to completion with extra environment variables.
///
/// - Parameters:
///   - environment: added to this process's environment; a `nil` value removes a variable.
public func runProduct(
    _ name: String,
    _ arguments: [String],
    environment: [String: String?] = [:],
    currentDirectory: URL? = nil
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = builtProduct(name)
    process.arguments = arguments
    var merged = ProcessInfo.processInfo.environment
    for (key, value) in environment { merged[key] = value }
    process.environment = merged
    if let currentDirectory { process.currentDirectoryURL = currentDirectory }
    let stdout = Pipe()
    let stderr = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read both pipes before waiting so a chatty child never blocks on a full pipe.
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    let errors = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus,
        stdout: String(decoding: output, as: UTF8.self),
        stderr: String(decoding: errors, as: UTF8.self)
    )
}

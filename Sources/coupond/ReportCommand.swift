import ArgumentParser
import CoupondDaemon
import Foundation
import Postgres
import Signing
import Storage

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Writes a send's failure report as CSV: customer ID, email, mobile number, channel and reason.",
        discussion: """
            coupond report 42                     the report of send 42 (operators, any time)
            coupond report --link "https://…"     checks a merchant's signed link first: refused once it has \
            expired (7 days after the send) or if it was altered
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The send's id.") var sendID: Int64?

    @Option(help: ArgumentHelp("A signed report link from a merchant notice.", valueName: "url")) var link: String?

    @Option(help: ArgumentHelp("Write to this file instead of standard output.", valueName: "path")) var output: String?

    func validate() throws {
        guard (sendID == nil) != (link == nil) else { throw ValidationError("give either a send id or --link") }
    }

    func run() throws {
        try reportingFailures {
            let configuration = try global.loadConfiguration()
            let connection = try global.connect(configuration)
            defer { connection.close() }
            var id = sendID ?? 0
            if let link {
                guard let keyFile = configuration.reportKeyFile, let base = configuration.publicBaseURL else {
                    throw ConfigurationError(
                        setting: "links.report_key_file",
                        reason: "and links.public_base_url are needed to check links"
                    )
                }
                let signer = ReportLinkSigner(
                    key: try Daemon.secret(keyFile, setting: "links.report_key_file", minimumBytes: 32),
                    baseURL: base
                )
                do {
                    id = try signer.verify(link, installation: try Schema.installationID(connection))
                } catch let refusal as ReportLinkSigner.Refusal {
                    throw CommandFailure(.refused, refusal.description)
                }
            }
            guard let send = try SendStore(connection: connection).send(id: id) else {
                throw CommandFailure(.notFound, "send \(id) does not exist")
            }
            guard send.status.hasEnded else {
                throw CommandFailure(
                    .notFound,
                    "send \(id) is \(send.statusLabel.lowercased()); its report comes when it ends"
                )
            }
            let handle: FileHandle
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: nil) else {
                    throw CommandFailure(.notFound, "cannot write \(output)")
                }
                handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            } else {
                handle = FileHandle.standardOutput
            }
            var buffer = FailureReport.csvLine(FailureReport.header)
            try FailureReport.rows(sendID: id, on: connection) { row in
                buffer += FailureReport.csvLine(row)
                if buffer.utf8.count > 64 * 1024 {
                    handle.write(Data(buffer.utf8))
                    buffer = ""
                }
            }
            handle.write(Data(buffer.utf8))
            if output != nil { try handle.close() }
        }
    }
}

import ArgumentParser
import CoupondDaemon
import Foundation
import Postgres
import Storage

/// An error a command reports to its user, with the exit code a script can test.
struct CommandFailure: Error, CustomStringConvertible {
    /// sysexits(3) codes, so that scripts can tell kinds of failure apart.
    enum Status: Int32 {
        case refused = 65  // EX_DATAERR: a rule refused the request
        case notFound = 66  // EX_NOINPUT
        case unavailable = 69  // EX_UNAVAILABLE: the database cannot be reached
        case software = 70  // EX_SOFTWARE
        case temporary = 75  // EX_TEMPFAIL: try again later
        case config = 78  // EX_CONFIG
    }

    var status: Status
    var message: String
    var hint: String?

    init(_ status: Status, _ message: String, hint: String? = nil) {
        self.status = status
        self.message = message
        self.hint = hint
    }

    var description: String { message }
}

/// Runs a command body and turns known errors into a message on standard error and a sysexits code.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as CommandFailure {
        throw exit(error)
    } catch let refusal as SendRefusal {
        let status: CommandFailure.Status = refusal.sqlState == .noDataFound ? .notFound : .refused
        throw exit(CommandFailure(status, "\(refusal.message) [\(refusal.rule)]", hint: refusal.hint))
    } catch let error as ConfigurationError {
        throw exit(CommandFailure(.config, error.description))
    } catch let error as PostgresError {
        let status: CommandFailure.Status
        switch error.code {
        case .connectionFailed, .connectionLost: status = .unavailable
        default:
            // Class 22 (data exception) means the input could not be read as the type it should be.
            status = error.sqlState?.errorClass == "22" ? .refused : .software
        }
        throw exit(CommandFailure(status, error.message, hint: error.hint))
    } catch let error as StorageError {
        throw exit(CommandFailure(.notFound, error.description))
    }
}

private func exit(_ failure: CommandFailure) -> ExitCode {
    var text = "coupond: error: \(failure.message)\n"
    if let hint = failure.hint { text += "hint: \(hint)\n" }
    FileHandle.standardError.write(Data(text.utf8))
    return ExitCode(failure.status.rawValue)
}

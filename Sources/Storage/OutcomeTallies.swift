/// How a batch's customers that became final move a send's counts: a customer counts as sent when any channel reached
/// them, and each channel the send uses counts the customer as reached or failed on it.
struct FinishedTally {
    var sent = 0
    var failed = 0
    var emailSent = 0
    var emailFailed = 0
    var smsSent = 0
    var smsFailed = 0

    /// Adds a recipient row as it stands after the batch; one with a channel still open is not final and not counted.
    mutating func add(email: ChannelStatus?, sms: ChannelStatus?) {
        if email == .pending || email == .unknown || sms == .pending || sms == .unknown { return }
        if email == .sent || sms == .sent { sent += 1 } else { failed += 1 }
        if email == .sent { emailSent += 1 } else if email == .failed { emailFailed += 1 }
        if sms == .sent { smsSent += 1 } else if sms == .failed { smsFailed += 1 }
    }
}

/// How a batch's outcomes move a send's unknown and reconciled counts.
struct UnknownTally {
    /// Channels unknown after the batch, less those unknown before it (negative when more were settled).
    var added = 0
    /// Channels whose unknown outcome was settled.
    var settled = 0

    init(_ outcomes: [RecipientOutcome]) {
        for outcome in outcomes {
            for (status, was, resolution) in [
                (outcome.emailStatus, outcome.emailWasUnknown, outcome.emailResolution),
                (outcome.smsStatus, outcome.smsWasUnknown, outcome.smsResolution),
            ] {
                // A channel recorded without a status keeps the one it had.
                let unknownAfter = status == .unknown || (status == nil && was)
                added += (unknownAfter ? 1 : 0) - (was ? 1 : 0)
                if resolution != nil { settled += 1 }
            }
        }
    }
}

import Foundation
import Storage

/// Text and JSON renderings of sends for the terminal and for scripts.
enum OutputFormat {
    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A time in the shop's zone with its UTC offset, for example `2026-12-01 10:00 +05:30`.
    static func shopTime(_ date: Date?, _ timeZone: String) -> String {
        guard let date else { return "-" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: timeZone) ?? TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm xxx"
        return formatter.string(from: date)
    }

    /// For example `email gateway (sendgrid) unavailable since 2026-12-01 10:02 +00:00 (instance a), retrying`.
    static func unavailable(_ health: GatewayHealth) -> String {
        let since = shopTime(health.unavailableSince, "UTC")
        let error = health.lastError.map { "; last error: \($0)" } ?? ""
        return
            "\(health.channel) gateway (\(health.gateway)) unavailable since \(since) (instance \(health.instance)), "
            + "retrying\(error)"
    }

    static func channels(_ send: SendSummary) -> String {
        [send.email ? "email" : nil, send.sms ? "sms" : nil].compactMap { $0 }.joined(separator: "+")
    }

    /// The status column: the label plus progress, counts or reason as rule 10 asks.
    static func statusLine(_ send: SendSummary) -> String {
        switch send.status {
        case .sending:
            let progress = send.progressPercent.map { String(format: "%.1f%%", $0) } ?? "starting"
            return "Sending (\(progress), \(send.sentCount + send.failedCount)/\(send.recipientCount ?? 0))"
        case .done:
            return "Done (\(send.sentCount) sent, \(send.failedCount) failed)"
        case .failed:
            return "Failed: \(send.failureReasonText ?? send.failureReason ?? "unknown")"
        default:
            return send.statusLabel
        }
    }

    static func details(_ send: SendSummary) -> String {
        var lines: [(String, String)] = [
            ("Send", "\(send.sendID)"),
            ("Status", statusLine(send)),
            ("Shop", "\(send.shopID)"),
            ("Group", "\(send.groupID)" + (send.groupName.map { " (\($0))" } ?? "")),
            ("Coupon", "\(send.couponID)" + (send.couponTitle.map { " (\($0))" } ?? "")),
            ("Channels", channels(send)),
            ("Retries", retried(send)),
            ("Scheduled", shopTime(send.scheduledAt, send.timeZone) + " (\(send.timeZone))"),
            ("Created", shopTime(send.createdAt, send.timeZone)),
        ]
        // What the merchant was told, and when: the coupon may have been mended since.
        if let warning = send.warning, send.status == .notStarted {
            let cancel = "cancel until \(shopTime(send.cancelUntil, send.timeZone))"
            if let warnedAt = send.warnedAt {
                lines.append(("Warned", "\(shopTime(warnedAt, send.timeZone)): \(warning); \(cancel)"))
            } else {
                lines.append(("Warning", "\(warning) (emailing the merchant); \(cancel)"))
            }
        }
        if send.startedAt != nil { lines.append(("Started", shopTime(send.startedAt, send.timeZone))) }
        if send.finishedAt != nil { lines.append(("Finished", shopTime(send.finishedAt, send.timeZone))) }
        if let recipients = send.recipientCount { lines.append(("Recipients", "\(recipients)")) }
        if send.status != .notStarted && send.status != .cancelled {
            lines.append(("Sent", "\(send.sentCount)"))
            lines.append(("Failed", "\(send.failedCount)"))
            if let email = send.emailFunnel { lines.append(("Email", funnel(email))) }
            if let sms = send.smsFunnel { lines.append(("SMS", funnel(sms))) }
            lines.append(("Claimed", "\(send.claimedCount)"))
        }
        if send.unknownCount > 0 {
            lines.append(("Unconfirmed", "\(send.unknownCount) messages may have gone out; being reconciled"))
        }
        if send.reconciledCount > 0 {
            lines.append(("Reconciled", "\(send.reconciledCount) messages whose delivery was unknown, now settled"))
        }
        if send.sms && (send.smsSegments > 0 || send.smsBudget != nil) {
            let budget = send.smsBudget.map { " (budget \($0) \(send.currency))" } ?? ""
            lines.append(("SMS cost", "\(send.smsSegments) segments, \(send.smsCost) \(send.currency)\(budget)"))
        }
        lines.removeAll { $0.1.isEmpty }
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
            .joined(separator: "\n")
    }

    /// What a retry retries, for example `the failed customers of send 42 (retries exhausted)`; empty otherwise.
    static func retried(_ send: SendSummary) -> String {
        guard let earlier = send.retryOf else { return "" }
        let reasons = send.retryReasons.map { names in
            " (" + names.map { $0.replacingOccurrences(of: "_", with: " ") }.joined(separator: ", ") + ")"
        }
        return "the failed customers of send \(earlier)" + (reasons ?? "")
    }

    /// A channel's funnel, for example `4900 sent → 310 clicked (6.3%) → 95 claimed (1.9%); 100 failed`.
    static func funnel(_ channel: ChannelFunnel) -> String {
        func share(_ count: Int) -> String {
            channel.sent > 0 ? String(format: " (%.1f%%)", 100 * Double(count) / Double(channel.sent)) : ""
        }
        return "\(channel.sent) sent → \(channel.clicked) clicked\(share(channel.clicked)) → "
            + "\(channel.claimed) claimed\(share(channel.claimed)); \(channel.failed) failed"
    }

    static func table(_ sends: [SendSummary]) -> String {
        guard !sends.isEmpty else { return "No sends for this group." }
        let header = ["SEND", "SCHEDULED", "COUPON", "CHANNELS", "STATUS"]
        let rows = sends.map { send in
            [
                "\(send.sendID)",
                shopTime(send.scheduledAt, send.timeZone),
                send.couponTitle ?? "\(send.couponID)",
                channels(send),
                statusLine(send),
            ]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

public import Foundation
internal import Mustache

/// What the merchant is told when a send ends (rule 8).
public struct NoticeContext: Sendable {
    public var shopName: String
    public var groupName: String
    public var couponTitle: String
    /// `Done` or `Failed`.
    public var statusLabel: String
    public var recipientCount: Int
    public var sentCount: Int
    public var failedCount: Int
    /// Why the whole send failed, when it did.
    public var failureReason: String?
    /// Each channel the send used, with the customers it reached and did not.
    public var channels: [NoticeChannel]
    /// The signed failure-report link; present when, and only when, some channel failed a customer.
    public var reportLink: String?
    public var reportExpires: String?

    public init(
        shopName: String,
        groupName: String,
        couponTitle: String,
        statusLabel: String,
        recipientCount: Int,
        sentCount: Int,
        failedCount: Int,
        failureReason: String?,
        channels: [NoticeChannel] = [],
        reportLink: String?,
        reportExpires: String?
    ) {
        self.shopName = shopName
        self.groupName = groupName
        self.couponTitle = couponTitle
        self.statusLabel = statusLabel
        self.recipientCount = recipientCount
        self.sentCount = sentCount
        self.failedCount = failedCount
        self.failureReason = failureReason
        self.channels = channels
        self.reportLink = reportLink
        self.reportExpires = reportExpires
    }

    var values: [String: Any] {
        var values: [String: Any] = [
            "shop_name": shopName, "group_name": groupName, "coupon_title": couponTitle, "status": statusLabel,
            "recipient_count": recipientCount, "sent_count": sentCount, "failed_count": failedCount,
            "has_failures": failedCount > 0,
            "channels": channels.map { ["name": $0.name, "sent": $0.sent, "failed": $0.failed] as [String: Any] },
        ]
        if let failureReason { values["failure_reason"] = failureReason }
        if let reportLink { values["report_link"] = reportLink }
        if let reportExpires { values["report_expires"] = reportExpires }
        return values
    }
}

/// One channel's line in the notice: `Email: 4900 reached, 100 not reached`.
public struct NoticeChannel: Sendable {
    public var name: String
    public var sent: Int
    public var failed: Int

    public init(name: String, sent: Int, failed: Int) {
        self.name = name
        self.sent = sent
        self.failed = failed
    }
}

/// The merchant notice's templates: `notice_subject.mustache`, `notice.html.mustache`, `notice.txt.mustache`.
public struct NoticeTemplates: Sendable {
    public static let fileNames = EmailTemplateFiles.fileNames("notice")

    private let files: EmailTemplateFiles

    /// - Throws: ``TemplateError`` naming a missing or unparsable file.
    public init(directory: URL) throws {
        files = try EmailTemplateFiles(directory: directory, name: "notice")
    }

    /// Renders the notice as email content: subject, HTML and text.
    public func render(_ context: NoticeContext) -> (subject: String, html: String, text: String) {
        files.render(context.values)
    }
}

/// The three templates of one email to the merchant: `<name>_subject.mustache`, `<name>.html.mustache` and
/// `<name>.txt.mustache`.
struct EmailTemplateFiles: Sendable {
    static func fileNames(_ name: String) -> [String] {
        ["\(name)_subject.mustache", "\(name).html.mustache", "\(name).txt.mustache"]
    }

    private let subject: MustacheTemplate
    private let html: MustacheTemplate
    private let text: MustacheTemplate

    init(directory: URL, name: String) throws {
        let names = Self.fileNames(name)
        subject = try TemplateLoader.load(directory, names[0], plainText: true)
        html = try TemplateLoader.load(directory, names[1], plainText: false)
        text = try TemplateLoader.load(directory, names[2], plainText: true)
    }

    func render(_ values: [String: Any]) -> (subject: String, html: String, text: String) {
        (
            subject.render(values).trimmingCharacters(in: .whitespacesAndNewlines), html.render(values),
            text.render(values)
        )
    }
}

/// Reads one template file, naming it in errors.
enum TemplateLoader {
    static func load(_ directory: URL, _ name: String, plainText: Bool) throws -> MustacheTemplate {
        let url = directory.appendingPathComponent(name)
        let source: String
        do {
            source = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw TemplateError(file: url.path, reason: "cannot be read")
        }
        // Only HTML parts escape; the pragma makes the others plain text so "&" stays "&".
        let pragma = plainText ? "{{% CONTENT_TYPE: TEXT}}" : ""
        do {
            return try MustacheTemplate(string: pragma + source)
        } catch {
            throw TemplateError(file: url.path, reason: "is not valid Mustache: \(error)")
        }
    }
}

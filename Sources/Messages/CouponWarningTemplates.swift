public import Foundation

/// What the merchant is told when a scheduled send's coupon would make it fail at its hour, while it can still be
/// cancelled.
public struct CouponWarningContext: Sendable {
    public var shopName: String
    public var groupName: String
    public var couponTitle: String
    public var sendID: Int64
    /// The send's hour and the last moment to cancel it, in the shop's time.
    public var scheduledAt: String
    public var cancelUntil: String
    /// The rule's message, for example `coupon 3 is not published`, and its hint.
    public var problem: String
    public var hint: String?

    public init(
        shopName: String,
        groupName: String,
        couponTitle: String,
        sendID: Int64,
        scheduledAt: String,
        cancelUntil: String,
        problem: String,
        hint: String?
    ) {
        self.shopName = shopName
        self.groupName = groupName
        self.couponTitle = couponTitle
        self.sendID = sendID
        self.scheduledAt = scheduledAt
        self.cancelUntil = cancelUntil
        self.problem = problem
        self.hint = hint
    }

    var values: [String: Any] {
        var values: [String: Any] = [
            "shop_name": shopName, "group_name": groupName, "coupon_title": couponTitle, "send_id": sendID,
            "scheduled_at": scheduledAt, "cancel_until": cancelUntil, "problem": problem,
        ]
        if let hint { values["hint"] = hint }
        return values
    }
}

/// The coupon warning's templates: `warning_subject.mustache`, `warning.html.mustache`, `warning.txt.mustache`.
public struct CouponWarningTemplates: Sendable {
    public static let fileNames = EmailTemplateFiles.fileNames("warning")

    private let files: EmailTemplateFiles

    /// - Throws: ``TemplateError`` naming a missing or unparsable file.
    public init(directory: URL) throws {
        files = try EmailTemplateFiles(directory: directory, name: "warning")
    }

    /// Renders the warning as email content: subject, HTML and text.
    public func render(_ context: CouponWarningContext) -> (subject: String, html: String, text: String) {
        files.render(context.values)
    }
}

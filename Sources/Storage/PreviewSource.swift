public import Foundation
public import Postgres

/// Everything a preview needs from the database: the shop, the coupon, a sample member and how many members
/// SMS would reach.
public struct PreviewSource: Sendable {
    public var shopName: String
    public var loginURL: String
    public var timeZone: String
    public var currency: String
    public var couponID: Int64
    public var couponTitle: String
    public var couponDescription: String
    public var couponEndsAt: Date?
    public var customerID: Int64?
    public var customerName: String?
    /// The sample customer's locale and the shop's, which choose the templates' language.
    public var customerLocale: String?
    public var shopLocale: String?
    /// The shop's postal address, in the email's footer; `nil` when the shop has none (email sends are refused).
    public var shopPostalAddress: String?
    public var memberCount: Int
    /// Members the send would reach by SMS (`coupond.sms_unreachable`, as at the start): the estimate's multiplier.
    public var smsReachableCount: Int

    /// The current member of a group with the longest name (the longest SMS), or `nil` for an empty group.
    public static func longestNamedMember(on connection: PostgresConnection, groupID: Int64) throws -> Int64? {
        try connection.queryRow(
            """
            SELECT c.id FROM coupond.group_members m JOIN coupond.customers c ON c.id = m.customer_id
            WHERE m.group_id = \(groupID) AND m.removed_at IS NULL
            ORDER BY length(coalesce(c.name, '')) DESC, c.id
            LIMIT 1
            """
        )?.decode("id", as: Int64.self)
    }

    /// Loads the preview data for a shop, group and coupon.
    ///
    /// - Parameter customerID: the sample customer; the group's first current member when `nil`.
    /// - Throws: ``StorageError`` naming what does not exist or does not belong together.
    public static func load(
        on connection: PostgresConnection,
        shopID: Int64,
        groupID: Int64,
        couponID: Int64,
        customerID: Int64?
    ) throws -> PreviewSource {
        guard let shop = try connection.queryRow("SELECT * FROM coupond.shops WHERE id = \(shopID)") else {
            throw StorageError("shop \(shopID) does not exist")
        }
        guard
            try connection.queryRow(
                "SELECT 1 FROM coupond.customer_groups WHERE id = \(groupID) AND shop_id = \(shopID)"
            ) != nil
        else { throw StorageError("customer group \(groupID) does not exist in shop \(shopID)") }
        guard
            let coupon = try connection.queryRow(
                "SELECT * FROM coupond.coupons WHERE id = \(couponID) AND shop_id = \(shopID)"
            )
        else { throw StorageError("coupon \(couponID) does not exist in shop \(shopID)") }
        let counts = try connection.queryRow(
            """
            WITH opted AS MATERIALIZED (
                SELECT EXISTS (SELECT 1 FROM coupond.opt_outs o WHERE o.channel = 'sms') AS present
            )
            -- sms_unreachable(customer_id, ...) IS NULL, with the opt-out probe skipped while nobody opted out.
            SELECT count(*) AS members,
                   count(*) FILTER (
                       WHERE coupond.sms_unreachable(c.mobile, c.sms_consent) IS NULL
                         AND NOT ((SELECT present FROM opted) AND EXISTS (
                             SELECT 1 FROM coupond.opt_outs o WHERE o.customer_id = c.id AND o.channel = 'sms'))
                   ) AS sms_reachable,
                   min(c.id) AS first_member
            FROM coupond.group_members m JOIN coupond.customers c ON c.id = m.customer_id
            WHERE m.group_id = \(groupID) AND m.removed_at IS NULL
            """
        )
        let sampleID = try customerID ?? counts?.decode("first_member", as: Int64?.self)
        var customerName: String?
        var customerLocale: String?
        if let sampleID {
            guard
                let customer = try connection.queryRow(
                    "SELECT name, locale FROM coupond.customers WHERE id = \(sampleID) AND shop_id = \(shopID)"
                )
            else { throw StorageError("customer \(sampleID) does not exist in shop \(shopID)") }
            customerName = try customer.decode("name", as: String?.self)
            customerLocale = try customer.decode("locale", as: String?.self)
        }
        return PreviewSource(
            shopName: try shop.decode("name"),
            loginURL: try shop.decode("login_url"),
            timeZone: try shop.decode("time_zone"),
            currency: try shop.decode("currency"),
            couponID: couponID,
            couponTitle: try coupon.decode("title"),
            couponDescription: try coupon.decode("description"),
            couponEndsAt: try coupon.decode("ends_at", as: Date?.self),
            customerID: sampleID,
            customerName: customerName,
            customerLocale: customerLocale,
            shopLocale: try shop.decode("locale", as: String?.self),
            shopPostalAddress: try shop.decode("postal_address", as: String?.self),
            memberCount: try counts?.decode("members") ?? 0,
            smsReachableCount: try counts?.decode("sms_reachable") ?? 0
        )
    }
}

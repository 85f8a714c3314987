public import Foundation
public import Postgres

/// Builders for the source data a send needs, with values that pass every rule unless a test changes one.
public struct Fixtures {
    public let connection: PostgresConnection

    public init(_ connection: PostgresConnection) {
        self.connection = connection
    }

    /// Pins the clock the rules read (`coupond.clock_now()`).
    public func setClock(_ date: Date) throws {
        try connection.execute(
            """
            INSERT INTO coupond.clock_override (fixed_at) VALUES (\(date))
            ON CONFLICT (singleton) DO UPDATE SET fixed_at = excluded.fixed_at
            """
        )
    }

    /// A shop; `postalAddress: nil` leaves the column out, for a schema from before migration 20.
    public func shop(
        timeZone: String = "UTC",
        name: String = "Test Shop",
        currency: String = "USD",
        postalAddress: String? = "1 Market Street, Springfield 12345, USA"
    ) throws -> Int64 {
        let id: Int64 = try connection.queryRow(
            """
            INSERT INTO coupond.shops (name, login_url, merchant_email, time_zone, currency)
            VALUES (\(name), 'https://shop.example/account/login?lang=en', 'owner@shop.example', \(timeZone), \
            \(currency))
            RETURNING id
            """
        )!.decode("id")
        if let postalAddress {
            try connection.execute("UPDATE coupond.shops SET postal_address = \(postalAddress) WHERE id = \(id)")
        }
        return id
    }

    /// A group with `members` customers, each with an email, a mobile number and consent for both channels.
    ///
    /// Addresses are unique across groups: `customer<n>.g<group>@mail.example` and `+1` followed by ten digits.
    public func group(shop: Int64, members: Int, name: String = "VIP") throws -> Int64 {
        let group: Int64 = try connection.queryRow(
            "INSERT INTO coupond.customer_groups (shop_id, name) VALUES (\(shop), \(name)) RETURNING id"
        )!.decode("id")
        if members > 0 {
            try connection.execute(
                """
                WITH new_customers AS (
                    INSERT INTO coupond.customers (shop_id, name, email, mobile, email_consent, sms_consent)
                    SELECT \(shop), 'Customer ' || n, 'customer' || n || '.g' || \(group) || '@mail.example',
                           '+1' || lpad((\(group) * 100000 + n)::text, 10, '0'), true, true
                    FROM generate_series(1, \(members)) AS n
                    RETURNING id
                )
                INSERT INTO coupond.group_members (group_id, customer_id) SELECT \(group), id FROM new_customers
                """
            )
        }
        return group
    }

    public struct Coupon {
        public var kind = "get_coupon_link"
        public var status = "published"
        public var startsAt: Date? = nil
        public var endsAt: Date? = nil
        public var receiveLimit: Int? = 1000
        public var claimedCount = 0
        public var target = "all_customers"
        public init() {}
    }

    public func coupon(shop: Int64, _ coupon: Coupon = Coupon(), title: String = "10% off") throws -> Int64 {
        try connection.queryRow(
            """
            INSERT INTO coupond.coupons
                (shop_id, title, kind, status, starts_at, ends_at, receive_limit, claimed_count, target, description)
            VALUES (\(shop), \(title), \(coupon.kind), \(coupon.status), \(coupon.startsAt), \(coupon.endsAt), \
            \(coupon.receiveLimit), \(coupon.claimedCount), \(coupon.target), 'On orders over $50')
            RETURNING id
            """
        )!.decode("id")
    }
}

/// Builds a UTC date from its parts.
public func utc(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int = 0, _ second: Int = 0) -> Date {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    return calendar.date(
        from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
    )!
}

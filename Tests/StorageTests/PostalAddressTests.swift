import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Every email shows the shop's postal address, so a send with email needs one, for any writer.
@Suite struct PostalAddressTests {
    typealias Rules = SchedulingRulesTests

    static func withoutAddress(_ db: TestDatabase) throws -> SchedulingRulesTests.Setup {
        let s = try Rules.setup(db)
        try db.connection.execute("UPDATE coupond.shops SET postal_address = NULL WHERE id = \(s.shop)")
        return s
    }

    @Test func anEmailSendFromAShopWithoutAPostalAddressIsRefusedNamingTheColumn() throws {
        try TestDatabase.with { db in
            let s = try Self.withoutAddress(db)
            do {
                try db.connection.execute(
                    """
                    INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, scheduled_at)
                    VALUES (\(s.shop), \(s.group), \(s.coupon), true, \(utc(2026, 12, 1, 12)))
                    """
                )
                Issue.record("an email send without a postal address was accepted")
            } catch let error as PostgresError {
                #expect(error.constraint == "sends_email_needs_postal_address")
                #expect(error.message == "shop \(s.shop) has no postal address, which every email must show")
                #expect(error.hint?.contains("coupond.shops.postal_address") == true)
            }
        }
    }

    @Test func anSMSOnlySendNeedsNoPostalAddress() throws {
        try TestDatabase.with { db in
            let s = try Self.withoutAddress(db)
            let refusal = try Rules.insert(
                db,
                shop: s.shop,
                group: s.group,
                coupon: s.coupon,
                at: utc(2026, 12, 1, 12),
                email: false,
                sms: true
            )
            #expect(refusal == nil)
        }
    }

    @Test func aShopCannotDropItsAddressWhileAnEmailSendIsToGoOutButMayChangeIt() throws {
        try TestDatabase.with { db in
            let s = try Rules.setup(db)
            #expect(
                try Rules.insert(db, shop: s.shop, group: s.group, coupon: s.coupon, at: utc(2026, 12, 1, 12)) == nil
            )
            let refusal = #expect(throws: PostgresError.self) {
                try db.connection.execute("UPDATE coupond.shops SET postal_address = NULL WHERE id = \(s.shop)")
            }
            #expect(refusal?.constraint == "shops_postal_address_in_use")
            try db.connection.execute(
                "UPDATE coupond.shops SET postal_address = '2 Harbour Road, Springfield' WHERE id = \(s.shop)"
            )
            try db.connection.execute("UPDATE coupond.sends SET status = 'cancelled'")
            try db.connection.execute("UPDATE coupond.shops SET postal_address = NULL WHERE id = \(s.shop)")
        }
    }

    @Test func aBlankPostalAddressIsRefused() throws {
        try TestDatabase.with { db in
            let s = try Rules.setup(db)
            let refusal = #expect(throws: PostgresError.self) {
                try db.connection.execute("UPDATE coupond.shops SET postal_address = '  ' WHERE id = \(s.shop)")
            }
            #expect(refusal?.constraint == "shops_postal_address_bounded")
        }
    }
}

import Foundation
import Postgres
import Storage
import TestSupport
import Testing

/// Rule 10: the group's activity list.
@Suite struct ActivityTests {
    @Test func listsEverySendOfTheGroupWithItsStatusLatestFirst() throws {
        try TestDatabase.with { db in
            let fixtures = Fixtures(db.connection)
            try fixtures.setClock(utc(2026, 12, 1, 10))
            let shop = try fixtures.shop()
            let group = try fixtures.group(shop: shop, members: 4)
            let otherGroup = try fixtures.group(shop: shop, members: 1, name: "Other")
            let coupon = try fixtures.coupon(shop: shop)
            let store = SendStore(connection: db.connection)
            func schedule(_ group: Int64, _ hour: Int) throws -> SendSummary {
                try store.schedule(
                    SendRequest(
                        shopID: shop,
                        groupID: group,
                        couponID: coupon,
                        email: true,
                        sms: true,
                        time: .instant(utc(2026, 12, 1, hour))
                    )
                )
            }
            let first = try schedule(group, 13)
            let second = try schedule(group, 14)
            let third = try schedule(group, 15)
            _ = try schedule(otherGroup, 16)
            _ = try store.cancel(sendID: third.sendID)
            // A send starts or fails at its hour, not before.
            try fixtures.setClock(utc(2026, 12, 1, 14))
            try db.connection.execute(
                "UPDATE coupond.sends SET status = 'sending', recipient_count = 4, sent_count = 1 WHERE id = \(second.sendID)"
            )
            try db.connection.execute(
                """
                UPDATE coupond.sends SET status = 'failed', failure_reason = 'insufficient_coupons'
                WHERE id = \(first.sendID)
                """
            )

            let activity = try store.activity(groupID: group)
            #expect(activity.map(\.sendID) == [third.sendID, second.sendID, first.sendID])
            #expect(activity.map(\.statusLabel) == ["Cancelled", "Sending", "Failed"])
            #expect(activity[1].progressPercent == 25.0)
            #expect(activity[1].startedAt != nil)
            #expect(activity[2].failureReason == "insufficient_coupons")
            #expect(activity[2].failureReasonText?.hasPrefix("Insufficient coupons") == true)
        }
    }
}

import Hummingbird
import Messages
import Postgres
import Signing

/// `GET /c/{code}` (SMS) and `GET /e/{code}` (email): a message's short claim link. Redirects to the customer's full
/// claim link (the shop's login URL with the claim token and UTM parameters) and records the channel's first click.
extension Endpoints {
    func followShortLink(_ code: String, channel: Messages.Channel) async throws -> Response {
        guard let bytes = ShortLinkCode.decode(code) else { return Self.notFoundPage }
        let hex = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        let target = try await database.run {
            connection -> (send: Int64, customer: Int64, login: String, coupon: Int64)? in
            guard
                let row = try connection.queryRow(
                    """
                    SELECT send_id, customer_id, login_url, coupon_id
                    FROM coupond.follow_link(decode(\(hex), 'hex'), \(channel.rawValue))
                    """
                )
            else { return nil }
            return (
                try row.decode("send_id"), try row.decode("customer_id"), try row.decode("login_url"),
                try row.decode("coupon_id")
            )
        }
        guard let target else { return Self.notFoundPage }
        let token = dependencies.tokens.token(sendID: target.send, customerID: target.customer)
        guard
            let link = ClaimLink.make(
                loginURL: target.login,
                token: token,
                channel: channel,
                campaign: ClaimLink.campaign(couponID: target.coupon)
            )
        else { return Self.notFoundPage }
        return Response(status: .found, headers: [.location: link, .cacheControl: "no-store"])
    }

    static var notFoundPage: Response {
        text(
            .notFound,
            """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
            <title>Link not found</title></head>
            <body><h1>This link is not valid</h1><p>Check that the whole link from the message was opened.</p></body>
            </html>

            """,
            type: "text/html; charset=utf-8"
        )
    }
}

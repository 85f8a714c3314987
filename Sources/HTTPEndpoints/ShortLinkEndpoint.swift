import Hummingbird
import Messages
import Postgres
import Signing

/// `GET /c/{code}`: an SMS's short claim link. Redirects to the customer's full claim link (the shop's login URL with
/// the claim token and UTM parameters) and records the first click.
extension Endpoints {
    func followShortLink(_ code: String) async throws -> Response {
        guard let bytes = ShortLinkCode.decode(code) else { return Self.notFoundPage }
        let hex = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        let target = try await database.run {
            connection -> (send: Int64, customer: Int64, login: String, coupon: Int64)? in
            // The click is recorded once: the first one's time stays.
            guard
                let row = try connection.queryRow(
                    """
                    UPDATE coupond.send_recipients r SET sms_clicked_at = coalesce(r.sms_clicked_at, now())
                    FROM coupond.sends s JOIN coupond.shops sh ON sh.id = s.shop_id
                    WHERE r.sms_link_code = decode(\(hex), 'hex') AND s.id = r.send_id
                    RETURNING r.send_id, r.customer_id, sh.login_url, s.coupon_id
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
                channel: .sms,
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

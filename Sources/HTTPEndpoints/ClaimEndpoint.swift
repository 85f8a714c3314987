import Foundation
import Hummingbird
import NIOCore
import Postgres
import Signing

/// `POST /claims`: the store's claim call (rule 15) as HTTP, through `coupond.claim_coupon`, so the rules are the
/// database's own.
extension Endpoints {
    /// The body the store sends.
    struct ClaimRequest: Decodable {
        var token: String
        var customerID: Int64

        enum CodingKeys: String, CodingKey {
            case token
            case customerID = "customer_id"
        }
    }

    /// HTTP status of each refusal of `coupond.claim_coupon`.
    static let claimRefusalStatus: [String: HTTPResponse.Status] = [
        "claim_token_valid": .notFound,
        "claim_customer_matches": .forbidden,
        "claim_coupon_valid": .gone,
        "claim_coupon_started": .conflict,
        "claim_once_per_customer": .conflict,
        "claim_limit_reached": .conflict,
    ]

    func claim(_ request: Request) async throws -> Response {
        guard let key = dependencies.claimsKey else {
            return Self.json(.notFound, ["error": "claims_off", "message": "claims are not served here"])
        }
        let presented = request.headers[.authorization].flatMap { header -> Substring? in
            header.hasPrefix("Bearer ") ? header.dropFirst("Bearer ".count) : nil
        }
        guard let presented, ConstantTime.equal(Array(presented.utf8), Array(key.utf8)) else {
            var response = Self.json(
                .unauthorized,
                ["error": "unauthorized", "message": "send the claims key as Authorization: Bearer <key>"]
            )
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        var request = request
        let body = try await request.collectBody(upTo: 16 * 1024)
        let claim: ClaimRequest
        do {
            claim = try JSONDecoder().decode(ClaimRequest.self, from: Data(body.readableBytesView))
        } catch {
            return Self.json(
                .badRequest,
                [
                    "error": "bad_request",
                    "message": "the body must be JSON with a string \"token\" and an integer \"customer_id\"",
                ]
            )
        }
        do {
            let row = try await database.run { connection in
                try connection.queryRow(
                    "SELECT coupon_id, send_id, claimed_at FROM coupond.claim_coupon(\(claim.token), \(claim.customerID))"
                ).map {
                    [
                        "coupon_id": $0["coupon_id"] ?? "", "send_id": $0["send_id"] ?? "",
                        "claimed_at": $0["claimed_at"] ?? "",
                    ]
                }
            }
            return Self.json(.ok, row ?? [:])
        } catch let error as PostgresError where error.constraint != nil && error.code == .queryFailed {
            let rule = error.constraint ?? ""
            var fields = ["error": rule, "message": error.message]
            if let hint = error.hint { fields["hint"] = hint }
            return Self.json(Self.claimRefusalStatus[rule] ?? .unprocessableContent, fields)
        }
    }

    static func json(_ status: HTTPResponse.Status, _ fields: [String: String]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(
            status: status,
            headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }

}

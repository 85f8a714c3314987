public import Foundation
public import Postgres

/// One instance's view of one gateway (`coupond.gateway_health`).
public struct GatewayHealth: Sendable, Equatable {
    public var instance: String
    /// `email` or `sms`.
    public var channel: String
    /// The gateway's short name, for example `sendgrid`.
    public var gateway: String
    /// `nil` while the gateway is available.
    public var unavailableSince: Date?
    public var lastError: String?
    public var updatedAt: Date

    public init(
        instance: String,
        channel: String,
        gateway: String,
        unavailableSince: Date?,
        lastError: String?,
        updatedAt: Date = Date()
    ) {
        self.instance = instance
        self.channel = channel
        self.gateway = gateway
        self.unavailableSince = unavailableSince
        self.lastError = lastError
        self.updatedAt = updatedAt
    }
}

/// Writes and reads whether the instances can reach their gateways.
public struct GatewayHealthStore {
    public let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Records what an instance's circuit breaker says of a gateway.
    public func record(_ health: GatewayHealth) throws {
        try connection.execute(
            """
            INSERT INTO coupond.gateway_health (instance, channel, gateway, unavailable_since, last_error, updated_at)
            VALUES (\(health.instance), \(health.channel), \(health.gateway), \(health.unavailableSince),
                    \(health.lastError), now())
            ON CONFLICT (instance, channel) DO UPDATE SET
                gateway = EXCLUDED.gateway, unavailable_since = EXCLUDED.unavailable_since,
                last_error = EXCLUDED.last_error, updated_at = now()
            """
        )
    }

    /// The gateways some instance finds unavailable, as written within the last `freshSeconds` (an instance that
    /// stopped leaves its last row behind).
    public func unavailable(freshSeconds: Int = 300) throws -> [GatewayHealth] {
        try connection.query(
            """
            SELECT instance, channel, gateway, unavailable_since, last_error, updated_at
            FROM coupond.gateway_health
            WHERE unavailable_since IS NOT NULL AND updated_at > now() - make_interval(secs => \(freshSeconds))
            ORDER BY channel, unavailable_since
            """
        ).map { row in
            GatewayHealth(
                instance: try row.decode("instance"),
                channel: try row.decode("channel"),
                gateway: try row.decode("gateway"),
                unavailableSince: try row.decode("unavailable_since", as: Date?.self),
                lastError: try row.decode("last_error", as: String?.self),
                updatedAt: try row.decode("updated_at")
            )
        }
    }
}

-- Whether each instance can reach its gateways, for `coupond status` and dashboards: while a gateway is down, an
-- instance's circuit breaker holds its messages (they wait instead of failing), and this says since when.

CREATE TABLE coupond.gateway_health (
    instance            text NOT NULL,
    channel             text NOT NULL CONSTRAINT gateway_health_channel_known CHECK (channel IN ('email', 'sms')),
    gateway             text NOT NULL,
    unavailable_since   timestamptz,
    last_error          text,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, channel)
);

COMMENT ON TABLE coupond.gateway_health IS
    'Per instance and channel: since when the gateway is unavailable (NULL while it is up). Written by coupond run.';

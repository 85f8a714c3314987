-- One random id per installation, made when the schema is created (by `coupond migrate`) and part of every
-- idempotency key and report-link signature. Without it, `coupond-<send>-<customer>-<channel>` was the same in
-- staging and production (or in two shops' databases behind one gateway account), and an idempotent gateway dropped
-- a new message as a repeat of another installation's, while Coupond recorded it as sent.

CREATE TABLE coupond.installation (
    -- At most one row.
    singleton   boolean PRIMARY KEY DEFAULT true CONSTRAINT installation_single_row CHECK (singleton),
    id          text NOT NULL CONSTRAINT installation_id_format CHECK (id ~ '^[0-9a-f]{16}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE coupond.installation IS
    'This installation''s random id (64 bits, hex): part of every idempotency key and report-link signature.';

INSERT INTO coupond.installation (id) VALUES (left(replace(gen_random_uuid()::text, '-', ''), 16));

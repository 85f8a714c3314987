-- Opt-outs (issue #11): a customer who replied STOP to an SMS (or whom the platform marks) gets nothing more on that
-- channel from any later send; the customer fails with "unsubscribed" and is in the report. The platform reads the
-- table to update its own consent. Carriers require marketing SMS to say how to opt out, and an opt-out to hold.

CREATE TABLE coupond.opt_outs (
    customer_id     bigint NOT NULL REFERENCES coupond.customers (id) ON DELETE CASCADE,
    channel         text NOT NULL CONSTRAINT opt_outs_channel_known CHECK (channel IN ('email', 'sms')),
    opted_out_at    timestamptz NOT NULL DEFAULT now(),
    -- sms_stop: a STOP reply; platform: the platform's own consent screen; one_click and link: email unsubscribe.
    source          text NOT NULL CONSTRAINT opt_outs_source_known
        CHECK (source IN ('sms_stop', 'platform', 'one_click', 'link')),
    PRIMARY KEY (customer_id, channel)
);

COMMENT ON TABLE coupond.opt_outs IS
    'Customers who asked for no more messages on a channel; every send honours it (reason unsubscribed).';

-- Records an opt-out (kept from the first time) and returns whether it is new.
CREATE FUNCTION coupond.opt_out(customer_id bigint, channel text, source text) RETURNS boolean
LANGUAGE sql AS $$
    WITH added AS (
        INSERT INTO coupond.opt_outs (customer_id, channel, source)
        VALUES (opt_out.customer_id, opt_out.channel, opt_out.source)
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM added)
$$;

-- Opts every customer with this mobile number out of SMS (or back in, for START), as a STOP reply from the number
-- asks; returns how many customers it changed.
CREATE FUNCTION coupond.sms_reply(from_number text, keyword text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    changed integer := 0;
    word    text := upper(btrim(keyword));
BEGIN
    IF word IN ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT') THEN
        INSERT INTO coupond.opt_outs (customer_id, channel, source)
            SELECT c.id, 'sms', 'sms_stop' FROM coupond.customers c WHERE c.mobile = from_number
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS changed = ROW_COUNT;
    ELSIF word IN ('START', 'UNSTOP', 'YES') THEN
        DELETE FROM coupond.opt_outs o
            USING coupond.customers c
            WHERE c.mobile = from_number AND o.customer_id = c.id AND o.channel = 'sms' AND o.source = 'sms_stop';
        GET DIAGNOSTICS changed = ROW_COUNT;
    END IF;
    RETURN changed;
END;
$$;

-- Why a customer cannot get a channel, opt-outs included: the reachability of 0012 with the customer's id.
CREATE FUNCTION coupond.email_unreachable(customer_id bigint, email text, consent boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coalesce(email, '') = '' THEN 'no_email_address'
                WHEN EXISTS (SELECT 1 FROM coupond.opt_outs o
                             WHERE o.customer_id = email_unreachable.customer_id AND o.channel = 'email')
                    THEN 'unsubscribed'
                ELSE coupond.email_unreachable(email, consent) END
$$;

CREATE FUNCTION coupond.sms_unreachable(customer_id bigint, mobile text, consent boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coupond.sms_unreachable(mobile, consent) IN ('no_mobile_number', 'invalid_mobile_number')
                    THEN coupond.sms_unreachable(mobile, consent)
                WHEN EXISTS (SELECT 1 FROM coupond.opt_outs o
                             WHERE o.customer_id = sms_unreachable.customer_id AND o.channel = 'sms')
                    THEN 'unsubscribed'
                ELSE coupond.sms_unreachable(mobile, consent) END
$$;

ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_error_known;
ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_sms_error_known;
ALTER TABLE coupond.send_recipients
    ADD CONSTRAINT send_recipients_error_known CHECK (
        email_error IS NULL OR email_error IN
            ('no_email_address', 'no_consent', 'unsubscribed', 'gateway_refused', 'retries_exhausted',
             'delivery_unconfirmed', 'system_error')),
    ADD CONSTRAINT send_recipients_sms_error_known CHECK (
        sms_error IS NULL OR sms_error IN
            ('no_mobile_number', 'invalid_mobile_number', 'no_consent', 'unsubscribed', 'gateway_refused',
             'retries_exhausted', 'delivery_unconfirmed', 'message_too_long', 'system_error'));

CREATE OR REPLACE FUNCTION coupond.reason_text(reason text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE reason
        WHEN 'invalid_coupon' THEN 'Invalid coupon: deleted, unpublished or expired'
        WHEN 'coupon_inapplicable' THEN 'Coupon inapplicable: its conditions no longer fit the group'
        WHEN 'insufficient_coupons' THEN 'Insufficient coupons: fewer can be claimed than the group has customers'
        WHEN 'system_error' THEN 'System error'
        WHEN 'no_email_address' THEN 'No email address'
        WHEN 'no_mobile_number' THEN 'No mobile number'
        WHEN 'invalid_mobile_number' THEN 'Invalid mobile number'
        WHEN 'no_consent' THEN 'No marketing consent'
        WHEN 'unsubscribed' THEN 'Unsubscribed: the customer opted out of this channel'
        WHEN 'gateway_refused' THEN 'Refused by the gateway'
        WHEN 'retries_exhausted' THEN 'Could not be delivered after several attempts'
        WHEN 'delivery_unconfirmed' THEN 'Delivery unconfirmed: the gateway may have sent it, and no answer said so'
        WHEN 'message_too_long' THEN 'Message too long: the SMS is over the 1,600 characters providers take'
        ELSE reason
    END
$$;

ALTER FUNCTION coupond.opt_out(bigint, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.sms_reply(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION coupond.opt_out(bigint, text, text), coupond.sms_reply(text, text) FROM PUBLIC;

-- The roles, as in 0015, with opt-outs: the daemon records STOP replies, the platform records and reads opt-outs.
CREATE OR REPLACE FUNCTION coupond.grant_roles(daemon text, platform text, readonly text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    grantee text;
BEGIN
    FOREACH grantee IN ARRAY ARRAY[daemon, platform, readonly] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = grantee) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', grantee);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database of the cluster created it at the same moment
            END;
        END IF;
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA coupond TO %I, %I, %I', daemon, platform, readonly);
    -- Reports and dashboards read everything and write nothing.
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA coupond TO %I', readonly);
    -- The engine reads everything, works sends and their recipients, and reports gateway health.
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA coupond TO %I', daemon);
    EXECUTE format('GRANT UPDATE ON coupond.sends TO %I', daemon);
    EXECUTE format('GRANT INSERT, UPDATE ON coupond.send_recipients, coupond.gateway_health TO %I', daemon);
    -- ... serves the store's claims over HTTP (POST /claims), and records the customers' STOP replies.
    EXECUTE format('GRANT EXECUTE ON FUNCTION coupond.start_send(bigint, text, interval), '
        'coupond.claim_coupon(text, bigint), coupond.sms_reply(text, text), '
        'coupond.opt_out(bigint, text, text) TO %I', daemon);
    -- Other systems schedule (the send's own columns only) or retry a send's failures, cancel, claim, read status,
    -- and record and read opt-outs.
    EXECUTE format('GRANT INSERT (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at) '
        'ON coupond.sends TO %I', platform);
    EXECUTE format('GRANT SELECT ON coupond.sends, coupond.group_activity, coupond.clock_override, coupond.opt_outs '
        'TO %I', platform);
    EXECUTE format('GRANT EXECUTE ON FUNCTION coupond.cancel_send(bigint), coupond.claim_coupon(text, bigint), '
        'coupond.retry_failed(bigint, timestamptz, text[], text[]), coupond.opt_out(bigint, text, text) TO %I',
        platform);
END;
$$;

-- A STOP reply names a number: its customers are found along this index, not by reading every customer.
CREATE INDEX customers_mobile ON coupond.customers (mobile) WHERE mobile IS NOT NULL;

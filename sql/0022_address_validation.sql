-- Customer addresses are untrusted input (issue #19): a customer's email comes from other systems and from shoppers
-- typing into forms, and with the SMTP provider it reaches the envelope's `RCPT TO:<...>` and the `To:` header. An
-- address carrying CR LF, `<` or `>` could add recipients or a whole second mail transaction. An email address is now
-- reachable only when it is a plain RFC 5321 mailbox; otherwise that customer's email fails with
-- 'invalid_email_address', recorded and in the failure report, while the rest of the send goes on.

-- Whether `email` is a plain addr-spec a mail server takes: a dot-atom local part of at most 64 characters (RFC 5322
-- atext: letters, digits and !#$%&'*+-/=?^_`{|}~), `@`, a domain of dot-separated labels of letters, digits and
-- inner hyphens, in all at most 254 characters (RFC 5321's path of 256 less the angle
-- brackets). ASCII only: no control, space, quote, bracket or non-ASCII character can pass, so nothing in it can end an
-- SMTP command line or a header. Internationalised domains arrive as their punycode (xn--) form. DNS's 63-character
-- label limit is left to the gateways: checking it with a bounded repeat made the check five times slower (7.6 s
-- against 1.5 s for a million addresses), and an over-long label cannot carry anything into a command.
CREATE FUNCTION coupond.email_address_valid(email text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT octet_length(email) <= 254
       AND email ~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$'
       AND octet_length(split_part(email, '@', 1)) <= 64
$$;

COMMENT ON FUNCTION coupond.email_address_valid(text) IS
    'Whether an email address is a plain RFC 5321 mailbox Coupond will hand to a gateway (see sql/0022).';

CREATE OR REPLACE FUNCTION coupond.email_unreachable(email text, consent boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(email, '') = '' THEN 'no_email_address'
                WHEN NOT coupond.email_address_valid(email) THEN 'invalid_email_address'
                WHEN NOT coalesce(consent, false) THEN 'no_consent' END
$$;

-- A malformed address fails as such before the opt-out lookup, as an invalid mobile number does for SMS.
CREATE OR REPLACE FUNCTION coupond.email_unreachable(customer_id bigint, email text, consent boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coupond.email_unreachable(email, consent) IN ('no_email_address', 'invalid_email_address')
                    THEN coupond.email_unreachable(email, consent)
                WHEN EXISTS (SELECT 1 FROM coupond.opt_outs o
                             WHERE o.customer_id = email_unreachable.customer_id AND o.channel = 'email')
                    THEN 'unsubscribed'
                ELSE coupond.email_unreachable(email, consent) END
$$;

ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_error_known;
ALTER TABLE coupond.send_recipients
    ADD CONSTRAINT send_recipients_error_known CHECK (
        email_error IS NULL OR email_error IN
            ('no_email_address', 'invalid_email_address', 'no_consent', 'unsubscribed', 'gateway_refused',
             'retries_exhausted', 'delivery_unconfirmed', 'system_error'));

-- A customer whose address was malformed can be retried once the platform has mended it.
ALTER TABLE coupond.sends DROP CONSTRAINT sends_retry_reasons_known;
ALTER TABLE coupond.sends
    ADD CONSTRAINT sends_retry_reasons_known CHECK (retry_reasons <@ ARRAY[
        'no_email_address', 'invalid_email_address', 'no_mobile_number', 'invalid_mobile_number', 'no_consent',
        'gateway_refused', 'retries_exhausted', 'delivery_unconfirmed', 'message_too_long', 'budget_exhausted',
        'system_error']::text[]
        AND cardinality(retry_reasons) > 0);

CREATE OR REPLACE FUNCTION coupond.reason_text(reason text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE reason
        WHEN 'invalid_coupon' THEN 'Invalid coupon: deleted, unpublished or expired'
        WHEN 'coupon_inapplicable' THEN 'Coupon inapplicable: its conditions no longer fit the group'
        WHEN 'insufficient_coupons' THEN 'Insufficient coupons: fewer can be claimed than the group has customers'
        WHEN 'system_error' THEN 'System error'
        WHEN 'no_email_address' THEN 'No email address'
        WHEN 'invalid_email_address' THEN 'Invalid email address: not a plain address a mail server takes'
        WHEN 'no_mobile_number' THEN 'No mobile number'
        WHEN 'invalid_mobile_number' THEN 'Invalid mobile number'
        WHEN 'no_consent' THEN 'No marketing consent'
        WHEN 'unsubscribed' THEN 'Unsubscribed: the customer opted out of this channel'
        WHEN 'gateway_refused' THEN 'Refused by the gateway'
        WHEN 'retries_exhausted' THEN 'Could not be delivered after several attempts'
        WHEN 'delivery_unconfirmed' THEN 'Delivery unconfirmed: the gateway may have sent it, and no answer said so'
        WHEN 'message_too_long' THEN 'Message too long: the SMS is over the 1,600 characters providers take'
        WHEN 'budget_exhausted' THEN 'SMS budget exhausted: the send''s SMS budget could not pay for this message'
        ELSE reason
    END
$$;

-- The engine refreshes the recipients' statistics after a start, so that pages are read along the primary key. Only
-- the owner may ANALYZE, so under coupond_daemon the statement was skipped with a warning: it runs as the owner here.
CREATE FUNCTION coupond.analyze_recipients() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    ANALYZE coupond.send_recipients;
END;
$$;

REVOKE EXECUTE ON FUNCTION coupond.analyze_recipients() FROM PUBLIC;

-- The roles, as in 0021, with the platform reading everything the read-only role reads: run as a member of
-- coupond_platform, as README says, `coupond schedule` failed on group_members and on shop_hour's read of shops,
-- `status` on gateway_health and `preview` on send_recipients.
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
        'coupond.opt_out(bigint, text, text), coupond.analyze_recipients() TO %I', daemon);
    -- Other systems schedule (the send's own columns only) or retry a send's failures, cancel, claim, read status,
    -- and record and read opt-outs.
    EXECUTE format('GRANT INSERT (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at, sms_budget, '
        'sms_shape) ON coupond.sends TO %I', platform);
    EXECUTE format('GRANT SELECT ON coupond.sends, coupond.group_activity, coupond.clock_override, coupond.opt_outs '
        'TO %I', platform);
    -- ... and reads what the read-only role reads, as `coupond schedule`, `preview` and `status` do: the shop's hour
    -- and quiet hours, the coupon's eligibility, the group's members and their exact SMS cost, the recipients of a
    -- retry and the gateways' health.
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA coupond TO %I', platform);
    EXECUTE format('GRANT EXECUTE ON FUNCTION coupond.cancel_send(bigint), coupond.claim_coupon(text, bigint), '
        'coupond.retry_failed(bigint, timestamptz, text[], text[]), coupond.opt_out(bigint, text, text) TO %I',
        platform);
END;
$$;

-- A short link's redirect (issue #19): a click after the first no longer writes a row version (3,000 GETs of one code
-- made about 2,900 updates), and a channel's click is recorded only for a customer that channel reached, so `/e/` no
-- longer counts an email click for a customer the email never reached. The redirect itself works either way.
CREATE OR REPLACE FUNCTION coupond.follow_link(code bytea, channel text)
RETURNS TABLE (send_id bigint, customer_id bigint, login_url text, coupon_id bigint)
LANGUAGE sql AS $$
    WITH target AS (
        SELECT r.send_id, r.customer_id, sh.login_url, s.coupon_id,
               CASE follow_link.channel
                   WHEN 'email' THEN r.email_clicked_at IS NULL AND r.email_status = 'sent'
                   WHEN 'sms' THEN r.sms_clicked_at IS NULL AND r.sms_status = 'sent'
               END AS first_click
        FROM coupond.send_recipients r
        JOIN coupond.sends s ON s.id = r.send_id
        JOIN coupond.shops sh ON sh.id = s.shop_id
        WHERE r.link_code = follow_link.code AND follow_link.channel IN ('email', 'sms')
    ), recorded AS (
        -- The clicked_at test is repeated here so that of two first clicks at once, the second (which waits for the
        -- row and sees it again) writes nothing.
        UPDATE coupond.send_recipients r SET
            email_clicked_at = CASE WHEN follow_link.channel = 'email' THEN now() ELSE r.email_clicked_at END,
            sms_clicked_at = CASE WHEN follow_link.channel = 'sms' THEN now() ELSE r.sms_clicked_at END
        FROM target t
        WHERE t.first_click AND r.send_id = t.send_id AND r.customer_id = t.customer_id
          AND CASE follow_link.channel WHEN 'email' THEN r.email_clicked_at IS NULL
                                       ELSE r.sms_clicked_at IS NULL END
        RETURNING r.send_id
    )
    SELECT t.send_id, t.customer_id, t.login_url, t.coupon_id FROM target t
$$;

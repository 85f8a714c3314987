-- The exact SMS cost of a send and a hard budget (issue #11). An SMS is billed per segment, and the segments depend on
-- each customer's own text: their name, their link's length, their locale's template and the encoding those force
-- (one character outside GSM-7 makes the whole SMS UCS-2, 70 characters a segment instead of 160). The cost is
-- counted customer by customer, not from one sample; a send may carry a budget that scheduling checks against it
-- and that the engine never goes over, failing the customers it cannot pay for with budget_exhausted.

ALTER TABLE coupond.sends
    ADD COLUMN sms_budget numeric(16, 4) CONSTRAINT sends_sms_budget_positive CHECK (sms_budget > 0),
    ADD COLUMN sms_shape jsonb;

COMMENT ON COLUMN coupond.sends.sms_budget IS
    'Most the send''s SMS may cost, in the shop''s currency; NULL for no limit.';
COMMENT ON COLUMN coupond.sends.sms_shape IS
    'The SMS text as the templates render it for this send, with markers for the name and the link, and the price '
    'per segment (coupond preview --json prints it; coupond schedule stores it): what sms_estimate counts.';

-- Segments of one SMS body, as the providers bill it: GSM-7 (160 septets alone, 153 per part; the extension table
-- takes two septets a character) when every character is in GSM 03.38, else UCS-2 (70 UTF-16 units alone, 67 per
-- part). The same rule as the engine's SMSSegments; a test holds the two to the same answers.
CREATE FUNCTION coupond.sms_segments(body text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    WITH tables AS (
        SELECT '@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'ÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,-./0123456789:;<=>?'
                   || '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà' AS basic,
               '^{}\[~]|€' || E'\f' AS extended
    ), counted AS (
        SELECT translate(body, basic || extended, '') = '' AS gsm,
               length(body) + length(body) - length(translate(body, extended, '')) AS septets,
               length(body) + length(regexp_replace(body, '[^\U00010000-\U0010FFFF]', '', 'g')) AS utf16
        FROM tables
    )
    SELECT CASE WHEN gsm THEN CASE WHEN septets <= 160 THEN 1 ELSE (septets + 152) / 153 END
                ELSE CASE WHEN utf16 <= 70 THEN 1 ELSE (utf16 + 66) / 67 END END
    FROM counted
$$;

-- The text without the white space the engine trims from a rendered SMS (Unicode's White_Space characters).
CREATE FUNCTION coupond.sms_trimmed(body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT btrim(body, E' \t\n\r\u000B\u000C\u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007'
                       || E'\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000')
$$;

-- The locale whose templates a customer gets among `available`: theirs, its language, the shop's, its language, else
-- '' (the default templates). The same choice as the engine's LocalizedTemplates.
CREATE FUNCTION coupond.template_locale(customer_locale text, shop_locale text, available text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((
        SELECT choice FROM (
            SELECT c.rank, l.step, l.choice
            FROM unnest(ARRAY[customer_locale, shop_locale]) WITH ORDINALITY AS c (locale, rank),
                 LATERAL (SELECT lower(replace(btrim(c.locale), '_', '-')) AS normalized) n,
                 LATERAL (VALUES (1, n.normalized), (2, split_part(n.normalized, '-', 1))) AS l (step, choice)
            WHERE coalesce(c.locale, '') <> '' AND l.choice = ANY (available)
        ) candidates
        ORDER BY rank, step LIMIT 1), '')
$$;

-- Each SMS recipient of a send, had it started now, with the segments of their own SMS: the members of `group_id`
-- whom SMS can reach (for a retry, only the earlier send's SMS failures it retries), their text rendered from
-- `shape` with their name, their locale's template and a link of their link's length. An SMS over 1,600 characters
-- is not sent (message_too_long) and costs nothing.
CREATE FUNCTION coupond.sms_estimate(shop_id bigint, group_id bigint, send_id bigint, shape jsonb,
                                     retry_of bigint DEFAULT NULL, retry_reasons text[] DEFAULT NULL)
RETURNS TABLE (customer_id bigint, locale text, characters integer, segments integer)
LANGUAGE sql STABLE AS $$
    WITH settings AS (
        SELECT (SELECT sh.locale FROM coupond.shops sh WHERE sh.id = sms_estimate.shop_id) AS shop_locale,
               ARRAY(SELECT jsonb_object_keys(shape -> 'locales')) AS available,
               shape -> 'link' AS link
    ), texts AS (
        SELECT c.id, l.locale,
               coupond.sms_trimmed(replace(replace(
                   shape -> 'locales' -> l.locale ->> (CASE WHEN coalesce(c.name, '') = '' THEN 'anonymous'
                                                           ELSE 'named' END),
                   E'\uE000N\uE001', coalesce(c.name, '')),
                   E'\uE000S\uE001',
                   CASE WHEN s.link ? 'short' THEN (s.link ->> 'short') || repeat('x', (s.link ->> 'code_length')::int)
                        ELSE (s.link ->> 'prefix') || coalesce(sms_estimate.send_id, 0) || '.' || c.id || '.'
                             || repeat('x', (s.link ->> 'mac_length')::int) || (s.link ->> 'suffix') END)) AS body
        FROM settings s
        JOIN coupond.group_members m ON m.group_id = sms_estimate.group_id AND m.removed_at IS NULL
        JOIN coupond.customers c ON c.id = m.customer_id
        CROSS JOIN LATERAL (SELECT coupond.template_locale(c.locale, s.shop_locale, s.available) AS locale) l
        WHERE coupond.sms_unreachable(c.id, c.mobile, c.sms_consent) IS NULL
          AND (sms_estimate.retry_of IS NULL OR EXISTS (
              SELECT 1 FROM coupond.send_recipients f
              WHERE f.send_id = sms_estimate.retry_of AND f.customer_id = c.id
                AND coupond.retried(f.sms_status, f.sms_error, sms_estimate.retry_reasons)))
    )
    SELECT id, nullif(locale, ''), length(body),
           CASE WHEN length(body) > 1600 THEN 0 ELSE coupond.sms_segments(body) END
    FROM texts
$$;

-- A send's own estimate, from the shape it was scheduled with.
CREATE FUNCTION coupond.sms_estimate(send coupond.sends)
RETURNS TABLE (customer_id bigint, locale text, characters integer, segments integer)
LANGUAGE sql STABLE AS $$
    SELECT * FROM coupond.sms_estimate(send.shop_id, send.group_id, send.id, send.sms_shape, send.retry_of,
                                       send.retry_reasons)
$$;

-- A budget needs an estimate to hold it to, and the estimate must fit it.
CREATE FUNCTION coupond.check_sms_budget() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    price       numeric;
    customers   bigint;
    total       bigint;
    currency    text;
BEGIN
    IF NEW.sms_budget IS NULL THEN
        RETURN NEW;
    END IF;
    IF NOT NEW.send_sms THEN
        PERFORM coupond.refuse('sends_sms_budget_needs_sms', format('send has an SMS budget but sends no SMS'),
            'Leave sms_budget empty for a send without SMS.');
    END IF;
    price := (NEW.sms_shape ->> 'price_per_segment')::numeric;
    IF price IS NULL OR NOT (NEW.sms_shape ? 'locales') OR NOT (NEW.sms_shape ? 'link') THEN
        PERFORM coupond.refuse('sends_sms_budget_estimated',
            'send has an SMS budget but no SMS estimate (sms_shape with a price per segment) to hold it to',
            'Schedule it with coupond schedule --sms-budget, or insert sms_shape as coupond preview --json prints it '
            '(it needs sms.price_per_segment in the configuration).');
    END IF;
    SELECT count(*), coalesce(sum(e.segments), 0) INTO customers, total
    FROM coupond.sms_estimate(NEW.shop_id, NEW.group_id, NEW.id, NEW.sms_shape, NEW.retry_of, NEW.retry_reasons) e;
    IF total * price > NEW.sms_budget THEN
        SELECT sh.currency INTO currency FROM coupond.shops sh WHERE sh.id = NEW.shop_id;
        PERFORM coupond.refuse('sends_sms_budget_exceeded',
            format('the SMS would cost %s %s (%s segments for %s customers), over the budget of %s %s',
                trim_scale(total * price), currency, total, customers, trim_scale(NEW.sms_budget), currency),
            'Raise sms_budget, shorten the SMS (the templates'' sms.mustache, the coupon''s title), or send to a '
            'smaller group.');
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_sms_budget_kept
    BEFORE INSERT ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.check_sms_budget();

-- What the budget was set to stays, like the rest of what a send was asked to do.
CREATE FUNCTION coupond.check_sms_budget_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM coupond.refuse('sends_immutable', format('send %s cannot change its SMS budget or estimate', OLD.id),
        'Cancel it and schedule a new send.', 'object_not_in_prerequisite_state');
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_sms_budget_fixed
    BEFORE UPDATE OF sms_budget, sms_shape ON coupond.sends
    FOR EACH ROW WHEN ((NEW.sms_budget, NEW.sms_shape) IS DISTINCT FROM (OLD.sms_budget, OLD.sms_shape))
    EXECUTE FUNCTION coupond.check_sms_budget_fixed();

ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_sms_error_known;
ALTER TABLE coupond.send_recipients
    ADD CONSTRAINT send_recipients_sms_error_known CHECK (
        sms_error IS NULL OR sms_error IN
            ('no_mobile_number', 'invalid_mobile_number', 'no_consent', 'unsubscribed', 'gateway_refused',
             'retries_exhausted', 'delivery_unconfirmed', 'message_too_long', 'budget_exhausted', 'system_error'));

-- The customers a budget left out can be retried.
ALTER TABLE coupond.sends DROP CONSTRAINT sends_retry_reasons_known;
ALTER TABLE coupond.sends
    ADD CONSTRAINT sends_retry_reasons_known CHECK (retry_reasons <@ ARRAY[
        'no_email_address', 'no_mobile_number', 'invalid_mobile_number', 'no_consent', 'gateway_refused',
        'retries_exhausted', 'delivery_unconfirmed', 'message_too_long', 'budget_exhausted', 'system_error']::text[]
        AND cardinality(retry_reasons) > 0);

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
        WHEN 'budget_exhausted' THEN 'SMS budget exhausted: the send''s SMS budget could not pay for this message'
        ELSE reason
    END
$$;

ALTER FUNCTION coupond.check_sms_budget() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.check_sms_budget_fixed() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The activity list, as in 0017, with the send's SMS budget.
CREATE OR REPLACE VIEW coupond.group_activity AS
SELECT
    s.group_id,
    g.name                                          AS group_name,
    s.shop_id,
    s.id                                            AS send_id,
    s.coupon_id,
    c.title                                         AS coupon_title,
    s.send_email,
    s.send_sms,
    s.scheduled_at,
    sh.time_zone,
    s.status,
    CASE s.status
        WHEN 'not_started' THEN 'Not started'
        WHEN 'sending' THEN 'Sending'
        WHEN 'done' THEN 'Done'
        WHEN 'failed' THEN 'Failed'
        WHEN 'cancelled' THEN 'Cancelled'
    END                                             AS status_label,
    s.failure_reason,
    coupond.reason_text(s.failure_reason)           AS failure_reason_text,
    s.recipient_count,
    s.sent_count,
    s.failed_count,
    CASE WHEN s.recipient_count > 0
        THEN round(100.0 * (s.sent_count + s.failed_count) / s.recipient_count, 1)
        WHEN s.status = 'done' THEN 100.0
    END                                             AS progress_percent,
    s.sms_segments,
    s.sms_cost,
    sh.currency,
    s.created_at,
    s.started_at,
    s.finished_at,
    s.unknown_count,
    s.reconciled_count,
    CASE WHEN s.send_email THEN s.email_sent_count END      AS email_sent_count,
    CASE WHEN s.send_email THEN s.email_failed_count END    AS email_failed_count,
    CASE WHEN s.send_email THEN s.email_clicked_count END   AS email_clicked_count,
    CASE WHEN s.send_email THEN s.email_claimed_count END   AS email_claimed_count,
    CASE WHEN s.send_sms THEN s.sms_sent_count END          AS sms_sent_count,
    CASE WHEN s.send_sms THEN s.sms_failed_count END        AS sms_failed_count,
    CASE WHEN s.send_sms THEN s.sms_clicked_count END       AS sms_clicked_count,
    CASE WHEN s.send_sms THEN s.sms_claimed_count END       AS sms_claimed_count,
    s.claimed_count,
    CASE WHEN s.sent_count > 0 THEN round(100.0 * s.claimed_count / s.sent_count, 1) END AS claimed_percent,
    s.retry_of,
    s.retry_reasons,
    s.warning,
    s.warning_hint,
    s.warned_at,
    s.scheduled_at - interval '2 hours'             AS cancel_until,
    s.sms_budget
FROM coupond.sends s
JOIN coupond.shops sh ON sh.id = s.shop_id
LEFT JOIN coupond.customer_groups g ON g.id = s.group_id
LEFT JOIN coupond.coupons c ON c.id = s.coupon_id;

-- The roles, as in 0019, with the budget and its estimate among the columns the platform may schedule with.
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
    EXECUTE format('GRANT INSERT (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at, sms_budget, '
        'sms_shape) ON coupond.sends TO %I', platform);
    EXECUTE format('GRANT SELECT ON coupond.sends, coupond.group_activity, coupond.clock_override, coupond.opt_outs '
        'TO %I', platform);
    EXECUTE format('GRANT EXECUTE ON FUNCTION coupond.cancel_send(bigint), coupond.claim_coupon(text, bigint), '
        'coupond.retry_failed(bigint, timestamptz, text[], text[]), coupond.opt_out(bigint, text, text) TO %I',
        platform);
END;
$$;

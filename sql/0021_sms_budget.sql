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

-- How providers bill an SMS: GSM-7 (160 septets alone, 153 per part; the extension table takes two septets a
-- character) when every character is in GSM 03.38, else UCS-2 (70 UTF-16 units alone, 67 per part). The same rule as
-- the engine's SMSSegments; a test holds the two to the same answers. Each piece is one expression, which the planner
-- inlines into a query over a million customers; the GSM 03.38 test is a regular expression, compiled once, where
-- translate() with the 140-character table cost 37 µs a text.
CREATE FUNCTION coupond.sms_gsm7(body text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT body ~ ('^[]@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'ÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,./0-9:;<=>?¡A-ZÄÖÑÜ§¿a-zäöñüà'
                   || '^{}\\[~|€' || E'\f' || '-]*$')
$$;

-- Septets of a GSM-7 text: one a character, two for the extension table's.
CREATE FUNCTION coupond.sms_septets(body text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 2 * length(body) - length(translate(body, '^{}\[~]|€' || E'\f', ''))
$$;

-- UTF-16 code units of a text: one a character, two beyond the Basic Multilingual Plane.
CREATE FUNCTION coupond.sms_utf16(body text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT length(body) + length(regexp_replace(body, '[^\U00010000-\U0010FFFF]', '', 'g'))
$$;

-- Segments of a GSM-7 SMS of `septets`, and of a UCS-2 one of `units`.
CREATE FUNCTION coupond.gsm7_segments(septets integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN septets <= 160 THEN 1 ELSE (septets + 152) / 153 END
$$;

CREATE FUNCTION coupond.ucs2_segments(units integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN units <= 70 THEN 1 ELSE (units + 66) / 67 END
$$;

-- Segments of one SMS body.
CREATE FUNCTION coupond.sms_segments(body text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN coupond.sms_gsm7(body) THEN coupond.gsm7_segments(coupond.sms_septets(body))
                ELSE coupond.ucs2_segments(coupond.sms_utf16(body)) END
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
--
-- The text is never built customer by customer: each template's fixed text is counted once, and a customer adds their
-- name's characters, septets or UTF-16 units (and GSM-7 or not) and their link's, which is the same for all but the
-- digits of their id. A name with white space at either end, which trimming the SMS could cut, is counted on the
-- whole text instead.
CREATE FUNCTION coupond.sms_estimate(shop_id bigint, group_id bigint, send_id bigint, shape jsonb,
                                     retry_of bigint DEFAULT NULL, retry_reasons text[] DEFAULT NULL)
RETURNS TABLE (customer_id bigint, locale text, characters integer, segments integer)
LANGUAGE sql STABLE AS $$
    WITH settings AS (
        SELECT (SELECT sh.locale FROM coupond.shops sh WHERE sh.id = sms_estimate.shop_id) AS shop_locale,
               ARRAY(SELECT jsonb_object_keys(shape -> 'locales')) AS available,
               shape -> 'link' ? 'short' AS short,
               coalesce(shape -> 'link' ->> 'short', shape -> 'link' ->> 'prefix') AS prefix,
               coalesce(shape -> 'link' ->> 'suffix', '') AS suffix,
               coalesce((shape -> 'link' ->> 'code_length')::int, (shape -> 'link' ->> 'mac_length')::int) AS filler
    ), link AS MATERIALIZED (
        -- The link's fixed text; the rest is digits, dots and the code or MAC, one septet and one unit each. The
        -- counts of this and the templates' text are materialized: inlined, they would run again for every member.
        SELECT s.*, coupond.sms_gsm7(s.prefix || s.suffix) AS gsm7,
               coupond.sms_septets(s.prefix || s.suffix) AS septets, coupond.sms_utf16(s.prefix || s.suffix) AS utf16,
               length(s.prefix || s.suffix) AS characters
        FROM settings s
    ), templates AS (
        SELECT t.key AS locale, v.named, coupond.sms_trimmed(t.value ->> v.variant) AS template
        FROM jsonb_each(shape -> 'locales') t
        CROSS JOIN (VALUES (true, 'named'), (false, 'anonymous')) AS v (named, variant)
    ), counted AS MATERIALIZED (
        SELECT x.*, coupond.sms_gsm7(x.fixed) AS gsm7, coupond.sms_septets(x.fixed) AS septets,
               coupond.sms_utf16(x.fixed) AS utf16, length(x.fixed) AS characters
        FROM (SELECT t.*,
                     (length(t.template) - length(replace(t.template, E'\uE000N\uE001', ''))) / 3 AS names,
                     (length(t.template) - length(replace(t.template, E'\uE000S\uE001', ''))) / 3 AS links,
                     replace(replace(t.template, E'\uE000N\uE001', ''), E'\uE000S\uE001', '') AS fixed
              FROM templates t) x
    ), opted AS MATERIALIZED (
        SELECT EXISTS (SELECT 1 FROM coupond.opt_outs o WHERE o.channel = 'sms') AS present
    ), members AS MATERIALIZED (
        SELECT c.id, coalesce(c.name, '') AS name, coalesce(c.locale, '') AS customer_locale
        FROM coupond.group_members m
        JOIN coupond.customers c ON c.id = m.customer_id
        WHERE m.group_id = sms_estimate.group_id AND m.removed_at IS NULL
          -- sms_unreachable(customer_id, ...) IS NULL, with the opt-out probe skipped while nobody opted out.
          AND coupond.sms_unreachable(c.mobile, c.sms_consent) IS NULL
          AND NOT ((SELECT present FROM opted) AND EXISTS (
              SELECT 1 FROM coupond.opt_outs o WHERE o.customer_id = c.id AND o.channel = 'sms'))
          AND (sms_estimate.retry_of IS NULL OR EXISTS (
              SELECT 1 FROM coupond.send_recipients f
              WHERE f.send_id = sms_estimate.retry_of AND f.customer_id = c.id
                AND coupond.retried(f.sms_status, f.sms_error, sms_estimate.retry_reasons)))
    ), chosen AS MATERIALIZED (
        -- The template choice once per distinct locale, not per customer.
        SELECT l.customer_locale,
               coupond.template_locale(nullif(l.customer_locale, ''), s.shop_locale, s.available) AS locale
        FROM (SELECT DISTINCT customer_locale FROM members) l CROSS JOIN settings s
    ), customers AS (
        SELECT m.id, m.name, ch.locale, k.template, k.names, k.links, k.gsm7, k.septets, k.utf16, k.characters,
               l.characters + l.filler
                   + CASE WHEN l.short THEN 0
                          ELSE length(coalesce(sms_estimate.send_id, 0)::text) + length(m.id::text) + 2 END
                   AS link_characters,
               l.gsm7 AS link_gsm7, l.septets - l.characters AS link_extra_septets,
               l.utf16 - l.characters AS link_extra_utf16, l.short, l.prefix, l.suffix, l.filler
        FROM members m
        JOIN chosen ch ON ch.customer_locale = m.customer_locale
        JOIN counted k ON k.locale = ch.locale AND k.named = (m.name <> '')
        CROSS JOIN link l
    ), whole AS (
        -- A name that trimming could cut: the whole text, as the engine renders it.
        SELECT c.id, coupond.sms_trimmed(replace(replace(c.template, E'\uE000N\uE001', c.name), E'\uE000S\uE001',
                   CASE WHEN c.short THEN c.prefix || repeat('x', c.filler)
                        ELSE c.prefix || coalesce(sms_estimate.send_id, 0) || '.' || c.id || '.' || repeat('x', c.filler)
                             || c.suffix END)) AS body
        FROM customers c
        WHERE c.names > 0 AND c.name <> coupond.sms_trimmed(c.name)
    )
    SELECT c.id, nullif(c.locale, ''), n.characters,
           CASE WHEN n.characters > 1600 THEN 0
                WHEN w.body IS NOT NULL THEN coupond.sms_segments(w.body)
                WHEN c.gsm7 AND (c.links = 0 OR c.link_gsm7) AND (c.names = 0 OR coupond.sms_gsm7(c.name))
                    THEN coupond.gsm7_segments(c.septets + c.names * coupond.sms_septets(c.name)
                                               + c.links * (c.link_characters + c.link_extra_septets))
                ELSE coupond.ucs2_segments(c.utf16 + c.names * coupond.sms_utf16(c.name)
                                           + c.links * (c.link_characters + c.link_extra_utf16))
           END
    FROM customers c
    LEFT JOIN whole w ON w.id = c.id
    CROSS JOIN LATERAL (
        SELECT coalesce(length(w.body), c.characters + c.names * length(c.name) + c.links * c.link_characters)
            AS characters
    ) n
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

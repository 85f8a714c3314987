-- Retry only the failed (issue #11). After a send ends Done with failures, the merchant schedules a new send of the
-- same coupon to the same group that goes only to the customers the earlier send failed, on the channels (and for the
-- reasons) chosen, and never on a channel that already reached them. It is a send like any other: rules 1 and 2 at
-- scheduling, 4 at the hour, 11 (cancel) and 12 (one send of a group at a time) hold. Its recipients are computed at
-- its hour: the earlier send's failures that are still members of the group.

ALTER TABLE coupond.sends
    ADD COLUMN retry_of bigint CONSTRAINT sends_retry_of_fkey REFERENCES coupond.sends (id),
    ADD COLUMN retry_reasons text[],
    ADD CONSTRAINT sends_retry_reasons_need_retry_of CHECK (retry_reasons IS NULL OR retry_of IS NOT NULL),
    ADD CONSTRAINT sends_retry_reasons_known CHECK (retry_reasons <@ ARRAY[
        'no_email_address', 'no_mobile_number', 'invalid_mobile_number', 'no_consent', 'gateway_refused',
        'retries_exhausted', 'delivery_unconfirmed', 'message_too_long', 'system_error']::text[]
        AND cardinality(retry_reasons) > 0);

COMMENT ON COLUMN coupond.sends.retry_of IS
    'The earlier send whose failed customers this send retries; NULL for a send to the whole group.';
COMMENT ON COLUMN coupond.sends.retry_reasons IS
    'With retry_of: only the failures for these reasons are retried; NULL for every reason.';

-- Whether a channel's outcome in the earlier send is one a retry for `reasons` takes up (NULL reasons: any failure).
CREATE FUNCTION coupond.retried(status text, error text, reasons text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(status = 'failed' AND (reasons IS NULL OR error = ANY (reasons)), false)
$$;

-- The customers a retry send goes to, if it started now: the earlier send's failures on the retry's channels that
-- are still members of the group.
CREATE FUNCTION coupond.retry_recipient_count(send coupond.sends) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*)
    FROM coupond.send_recipients f
    JOIN coupond.group_members m ON m.group_id = send.group_id AND m.customer_id = f.customer_id
        AND m.removed_at IS NULL
    WHERE f.send_id = send.retry_of
      AND ((send.send_email AND coupond.retried(f.email_status, f.email_error, send.retry_reasons))
        OR (send.send_sms AND coupond.retried(f.sms_status, f.sms_error, send.retry_reasons)))
$$;

-- A retry names a send of the same shop, group and coupon that ended Done, on channels it used, with failures left to
-- retry; whoever inserts it.
CREATE FUNCTION coupond.check_retry() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    earlier coupond.sends%ROWTYPE;
BEGIN
    SELECT * INTO earlier FROM coupond.sends s WHERE s.id = NEW.retry_of;
    IF NOT FOUND THEN
        PERFORM coupond.refuse('retry_of_exists', format('send %s does not exist', NEW.retry_of),
            'Check the id of the send to retry.', 'no_data_found');
    END IF;
    IF earlier.status <> 'done' THEN
        PERFORM coupond.refuse('retry_of_done',
            format('send %s is %s; only a send that ended Done can be retried', earlier.id,
                replace(earlier.status, '_', ' ')),
            'A failed send failed as a whole: schedule a new send instead.', 'object_not_in_prerequisite_state');
    END IF;
    IF (NEW.shop_id, NEW.group_id, NEW.coupon_id) IS DISTINCT FROM (earlier.shop_id, earlier.group_id, earlier.coupon_id)
    THEN
        PERFORM coupond.refuse('retry_same_send',
            format('a retry of send %s goes to its shop, group and coupon', earlier.id),
            format('Use shop %s, group %s and coupon %s.', earlier.shop_id, earlier.group_id, earlier.coupon_id));
    END IF;
    IF (NEW.send_email AND NOT earlier.send_email) OR (NEW.send_sms AND NOT earlier.send_sms) THEN
        PERFORM coupond.refuse('retry_channels_used',
            format('send %s did not use %s', earlier.id, CASE WHEN NEW.send_email AND NOT earlier.send_email
                THEN 'email' ELSE 'SMS' END),
            'Retry only channels the earlier send used.');
    END IF;
    IF coupond.retry_recipient_count(NEW) = 0 THEN
        PERFORM coupond.refuse('retry_has_failures',
            format('send %s has no failed customer to retry on these channels%s', earlier.id,
                CASE WHEN NEW.retry_reasons IS NOT NULL
                    THEN ' for ' || array_to_string(NEW.retry_reasons, ', ') ELSE '' END),
            'Check the send''s failure report for the channels and reasons that failed.');
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_retry_checked
    BEFORE INSERT ON coupond.sends
    FOR EACH ROW WHEN (NEW.retry_of IS NOT NULL OR NEW.retry_reasons IS NOT NULL)
    EXECUTE FUNCTION coupond.check_retry();

-- What a send retries is part of the request: nobody changes it afterwards.
CREATE FUNCTION coupond.keep_retry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM coupond.refuse('sends_retry_kept', 'what a send retries cannot be changed',
        'Cancel the send and schedule a new retry.');
    RETURN NULL;
END;
$$;

CREATE TRIGGER sends_retry_kept
    BEFORE UPDATE OF retry_of, retry_reasons ON coupond.sends
    FOR EACH ROW WHEN (NEW.retry_of IS DISTINCT FROM OLD.retry_of OR NEW.retry_reasons IS DISTINCT FROM OLD.retry_reasons)
    EXECUTE FUNCTION coupond.keep_retry();

-- The platform's (and `coupond retry`'s) call: schedules a retry of `send_id`'s failures at `scheduled_at`.
-- `channels` (NULL: every channel of the earlier send with failures to retry) and `reasons` (NULL: every reason)
-- narrow it. Returns the new send's id.
CREATE FUNCTION coupond.retry_failed(send_id bigint, scheduled_at timestamptz, channels text[] DEFAULT NULL,
                                     reasons text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    earlier     coupond.sends%ROWTYPE;
    email       boolean;
    sms         boolean;
    new_id      bigint;
BEGIN
    SELECT * INTO earlier FROM coupond.sends s WHERE s.id = retry_failed.send_id;
    IF NOT FOUND THEN
        PERFORM coupond.refuse('retry_of_exists', format('send %s does not exist', retry_failed.send_id),
            'Check the id of the send to retry.', 'no_data_found');
    END IF;
    IF channels IS NOT NULL AND (NOT channels <@ ARRAY['email', 'sms'] OR cardinality(channels) = 0) THEN
        PERFORM coupond.refuse('retry_channels_known', 'channels must be email, sms or both',
            'Give {email}, {sms} or {email,sms}, or NULL for every channel that failed.');
    END IF;
    IF channels IS NULL THEN
        -- Every channel of the earlier send that failed someone for these reasons.
        SELECT coalesce(bool_or(coupond.retried(f.email_status, f.email_error, reasons)), false),
               coalesce(bool_or(coupond.retried(f.sms_status, f.sms_error, reasons)), false)
            INTO email, sms
            FROM coupond.send_recipients f WHERE f.send_id = earlier.id;
        email := email AND earlier.send_email;
        sms := sms AND earlier.send_sms;
        IF NOT (email OR sms) THEN
            -- No channel to retry: let the insert's rule say so.
            email := earlier.send_email;
            sms := earlier.send_sms;
        END IF;
    ELSE
        email := 'email' = ANY (channels);
        sms := 'sms' = ANY (channels);
    END IF;
    INSERT INTO coupond.sends (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at, retry_of,
                               retry_reasons)
        VALUES (earlier.shop_id, earlier.group_id, earlier.coupon_id, email, sms, retry_failed.scheduled_at,
                earlier.id, reasons)
        RETURNING id INTO new_id;
    RETURN new_id;
END;
$$;

-- Rule 4 at the hour, as in 0012, with a retry's recipient count: its failures still in the group.
CREATE OR REPLACE FUNCTION coupond.start_send(send_id bigint, holder text, lease interval)
RETURNS TABLE (status text, failure_reason text, recipients integer)
LANGUAGE plpgsql AS $$
DECLARE
    send        coupond.sends%ROWTYPE;
    coupon      coupond.coupons%ROWTYPE;
    problem     record;
    members     integer;
BEGIN
    SELECT * INTO send FROM coupond.sends s WHERE s.id = start_send.send_id AND s.lease_owner = holder FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF send.status <> 'not_started' THEN
        RETURN QUERY SELECT send.status, send.failure_reason, send.recipient_count;
        RETURN;
    END IF;
    IF send.retry_of IS NULL THEN
        SELECT count(*) INTO members
            FROM coupond.group_members m WHERE m.group_id = send.group_id AND m.removed_at IS NULL;
    ELSE
        members := coupond.retry_recipient_count(send);
    END IF;
    SELECT * INTO coupon FROM coupond.coupons c WHERE c.id = send.coupon_id FOR SHARE;
    SELECT * INTO problem FROM coupond.coupon_problem(coupon, send.group_id, coupond.clock_now(),
        send.coupon_conditions_version) p WHERE p.reason IS NOT NULL LIMIT 1;
    IF FOUND THEN
        UPDATE coupond.sends s SET status = 'failed', failure_reason = problem.reason, notice_status = 'pending',
            lease_expires_at = now() + lease, heartbeat_at = now()
        WHERE s.id = send.id;
        RETURN QUERY SELECT 'failed'::text, problem.reason, NULL::integer;
        RETURN;
    END IF;
    -- recipients_after starts before every customer id: the list is written part by part as the send goes.
    UPDATE coupond.sends s SET status = 'sending', recipient_count = members, failed_count = 0,
        recipients_after = -9223372036854775808, lease_expires_at = now() + lease, heartbeat_at = now()
    WHERE s.id = send.id;
    RETURN QUERY SELECT 'sending'::text, NULL::text, members;
END;
$$;

-- CREATE OR REPLACE resets a function's security and settings: start_send runs with the owner's rights again.
ALTER FUNCTION coupond.start_send(bigint, text, interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.check_retry() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.retry_failed(bigint, timestamptz, text[], text[])
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION coupond.retry_failed(bigint, timestamptz, text[], text[]) FROM PUBLIC;

-- The activity list says which send a retry retries.
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
    s.retry_reasons
FROM coupond.sends s
JOIN coupond.shops sh ON sh.id = s.shop_id
LEFT JOIN coupond.customer_groups g ON g.id = s.group_id
LEFT JOIN coupond.coupons c ON c.id = s.coupon_id;

-- The roles, as in 0012, with the platform allowed to retry.
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
    -- ... and serves the store's claims over HTTP (POST /claims).
    EXECUTE format('GRANT EXECUTE ON FUNCTION coupond.start_send(bigint, text, interval), '
        'coupond.claim_coupon(text, bigint) TO %I', daemon);
    -- Other systems schedule (the send's own columns only) or retry a send's failures, cancel, claim, and read status.
    EXECUTE format('GRANT INSERT (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at) '
        'ON coupond.sends TO %I', platform);
    EXECUTE format('GRANT SELECT ON coupond.sends, coupond.group_activity, coupond.clock_override TO %I', platform);
    EXECUTE format('GRANT EXECUTE ON FUNCTION coupond.cancel_send(bigint), coupond.claim_coupon(text, bigint), '
        'coupond.retry_failed(bigint, timestamptz, text[], text[]) TO %I', platform);
END;
$$;

-- The database as a trust boundary. Until now every writer had to be the schema owner (the rule clock read the
-- owner's table with the caller's rights), so any writer could move the clock, disable a trigger, or push a send's
-- status by hand; the rule clock was the transaction's start; rules 2 and 4 and "reachable" lived twice, in SQL and in
-- Swift, and disagreed. Here every rule is defined once, in SQL, and roles say who may do what (coupond.grant_roles,
-- which `coupond migrate` calls with the configured role names).

-- The rule clock is the statement's time: a transaction opened before the cut-off cannot cancel after it, nor
-- schedule less than 2 hours ahead. Only the owner can shift it (no role is granted more than SELECT on the table).
CREATE OR REPLACE FUNCTION coupond.clock_now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT coalesce(fixed_at, statement_timestamp() + shift) FROM coupond.clock_override),
                    statement_timestamp())
$$;

-- Rules 2 and 4 in one place: what keeps `coupon` from going to the group at `due_at`, in the order a merchant would want
-- to hear it, or no row. `rule` names the refusal at scheduling (rule 2), `reason` the failure at the hour (rule 4).
-- `scheduled_version` is the coupon's conditions_version when the send was scheduled (NULL while scheduling).
-- The one difference between the rules is kept here: scheduling wants more coupons left than the group has members,
-- the hour fails only when fewer are left; a limit exactly at the group's size refuses a new send (reason NULL) but
-- does not fail one that was scheduled earlier.
CREATE FUNCTION coupond.coupon_problem(coupon coupond.coupons, group_id bigint, due_at timestamptz,
                                       scheduled_version integer DEFAULT NULL)
RETURNS TABLE (rule text, reason text, message text, hint text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    members     bigint;
    remaining   bigint;
BEGIN
    IF coupon.id IS NULL THEN
        RETURN QUERY SELECT 'sends_coupon_exists', 'invalid_coupon', 'the coupon does not exist',
            'Check the coupon id.';
        RETURN;
    END IF;
    IF coupon.status = 'deleted' THEN
        RETURN QUERY SELECT 'sends_coupon_published', 'invalid_coupon',
            format('coupon %s has been deleted', coupon.id), 'Choose a published coupon.';
        RETURN;
    END IF;
    IF coupon.status <> 'published' THEN
        RETURN QUERY SELECT 'sends_coupon_published', 'invalid_coupon',
            format('coupon %s is not published', coupon.id), 'Publish the coupon first.';
        RETURN;
    END IF;
    IF coupon.ends_at IS NOT NULL AND coupon.ends_at <= due_at THEN
        RETURN QUERY SELECT 'sends_coupon_not_expired', 'invalid_coupon',
            format('coupon %s expired at %s', coupon.id, to_char(coupon.ends_at AT TIME ZONE 'UTC',
                'YYYY-MM-DD HH24:MI "UTC"')),
            'Extend the coupon''s end time or choose another coupon.';
        RETURN;
    END IF;
    IF coupon.kind <> 'get_coupon_link' THEN
        RETURN QUERY SELECT 'sends_coupon_get_link', 'coupon_inapplicable',
            format('coupon %s is a %s coupon; only "get coupon link" coupons can be sent', coupon.id, coupon.kind),
            'Create a coupon of the "get coupon link" kind.';
        RETURN;
    END IF;
    IF coupon.target <> 'all_customers' THEN
        RETURN QUERY SELECT 'sends_coupon_all_customers', 'coupon_inapplicable',
            format('coupon %s is limited to some customer groups; only coupons for all customers can be sent',
                coupon.id),
            'Set the coupon''s target to all customers.';
        RETURN;
    END IF;
    IF scheduled_version IS NOT NULL AND coupon.conditions_version IS DISTINCT FROM scheduled_version THEN
        RETURN QUERY SELECT 'sends_coupon_conditions_kept', 'coupon_inapplicable',
            format('coupon %s''s conditions changed after the send was scheduled', coupon.id),
            'Schedule a new send with the coupon as it is now.';
        RETURN;
    END IF;
    SELECT count(*) INTO members
        FROM coupond.group_members m WHERE m.group_id = coupon_problem.group_id AND m.removed_at IS NULL;
    remaining := coupon.receive_limit::bigint - coupon.claimed_count;
    IF remaining IS NOT NULL AND remaining <= members THEN
        RETURN QUERY SELECT 'sends_coupon_remaining_limit',
            CASE WHEN remaining < members THEN 'insufficient_coupons' END,
            format('coupon %s can be received %s more times, which is not more than the group''s %s customers',
                coupon.id, remaining, members),
            'Raise the coupon''s receive limit above the group''s customer count.';
    END IF;
END;
$$;

-- Rule 7's reasons a customer cannot get a channel, or NULL when they can: used by the start of a send and by the
-- preview's estimate. Simple SQL, so that the planner inlines them into the statements that use them.
CREATE FUNCTION coupond.email_unreachable(email text, consent boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(email, '') = '' THEN 'no_email_address'
                WHEN NOT coalesce(consent, false) THEN 'no_consent' END
$$;

CREATE FUNCTION coupond.sms_unreachable(mobile text, consent boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(mobile, '') = '' THEN 'no_mobile_number'
                WHEN mobile !~ '^\+[1-9][0-9]{6,14}$' THEN 'invalid_mobile_number'
                WHEN NOT coalesce(consent, false) THEN 'no_consent' END
$$;

-- What is wrong with `wall_time` as a wall-clock time in `zone`: 'missing' when the clocks skip it (spring forward),
-- 'twice' when they pass it twice (fall back), or NULL. Shifts are 30 minutes to 2 hours in the tz database.
CREATE FUNCTION coupond.local_time_problem(wall_time timestamp, zone text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN (wall_time AT TIME ZONE zone) AT TIME ZONE zone <> wall_time THEN 'missing'
        WHEN EXISTS (
            SELECT 1 FROM unnest(ARRAY[interval '30 minutes', interval '1 hour', interval '2 hours']) AS shift
            WHERE ((wall_time AT TIME ZONE zone) + shift) AT TIME ZONE zone = wall_time
               OR ((wall_time AT TIME ZONE zone) - shift) AT TIME ZONE zone = wall_time) THEN 'twice'
    END
$$;

-- Refuses a shop-local hour that does not exist or exists twice, naming the nearest hours on either side that do not.
CREATE FUNCTION coupond.check_local_hour(wall_time timestamp, zone text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    problem     text := coupond.local_time_problem(wall_time, zone);
    before      timestamp := wall_time;
    after       timestamp := wall_time;
BEGIN
    IF problem IS NULL THEN
        RETURN;
    END IF;
    FOR step IN 1..6 LOOP
        before := before - interval '1 hour';
        EXIT WHEN coupond.local_time_problem(before, zone) IS NULL;
    END LOOP;
    FOR step IN 1..6 LOOP
        after := after + interval '1 hour';
        EXIT WHEN coupond.local_time_problem(after, zone) IS NULL;
    END LOOP;
    IF problem = 'missing' THEN
        PERFORM coupond.refuse('sends_local_time_exists',
            format('%s does not exist in %s: the clocks skip that hour on that day',
                to_char(wall_time, 'YYYY-MM-DD HH24:MI'), zone),
            format('Choose the nearest hour that exists: %s or %s.', to_char(before, 'YYYY-MM-DD HH24:MI'),
                to_char(after, 'YYYY-MM-DD HH24:MI')));
    END IF;
    PERFORM coupond.refuse('sends_local_time_unambiguous',
        format('%s happens twice in %s: the clocks go back over that hour on that day',
            to_char(wall_time, 'YYYY-MM-DD HH24:MI'), zone),
        format('Choose the nearest hour that happens once: %s or %s.', to_char(before, 'YYYY-MM-DD HH24:MI'),
            to_char(after, 'YYYY-MM-DD HH24:MI')));
END;
$$;

-- The instant of a shop-local hour, for writers that have a wall-clock time (`coupond schedule --at 10:00`): refuses
-- one that does not exist or exists twice instead of silently moving it. An unknown shop is left to the send's
-- own refusal (UTC here).
CREATE FUNCTION coupond.shop_hour(shop_id bigint, wall_time timestamp) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    zone    text := coalesce((SELECT s.time_zone FROM coupond.shops s WHERE s.id = shop_hour.shop_id), 'UTC');
BEGIN
    PERFORM coupond.check_local_hour(wall_time, zone);
    RETURN wall_time AT TIME ZONE zone;
END;
$$;

-- A new send, as in 0002_sends.sql, with rule 2 from coupond.coupon_problem and the local hour checked.
CREATE OR REPLACE FUNCTION coupond.check_new_send() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    shop            coupond.shops%ROWTYPE;
    grp             coupond.customer_groups%ROWTYPE;
    coupon          coupond.coupons%ROWTYPE;
    problem         record;
    now_at          timestamptz := coupond.clock_now();
    local_time      timestamp;
    earliest        timestamp;
BEGIN
    IF NEW.status IS DISTINCT FROM 'not_started' THEN
        PERFORM coupond.refuse('sends_new_not_started',
            format('a new send must have status not_started, not %s', coalesce(NEW.status, 'NULL')),
            'Leave status out of the INSERT; the engine moves it along.');
    END IF;
    IF NOT (coalesce(NEW.send_email, false) OR coalesce(NEW.send_sms, false)) THEN
        PERFORM coupond.refuse('sends_channel_required', 'a send needs at least one channel: email or SMS',
            'Set send_email, send_sms or both to true.');
    END IF;
    IF NEW.scheduled_at IS NULL THEN
        PERFORM coupond.refuse('sends_scheduled_on_the_hour', 'a send needs a scheduled time',
            'Set scheduled_at to an hour at least 2 hours from now.');
    END IF;

    SELECT * INTO shop FROM coupond.shops WHERE id = NEW.shop_id;
    IF NOT FOUND THEN
        PERFORM coupond.refuse('sends_shop_exists', format('shop %s does not exist', NEW.shop_id),
            'Check the shop id.', 'foreign_key_violation');
    END IF;
    SELECT * INTO grp FROM coupond.customer_groups WHERE id = NEW.group_id;
    IF NOT FOUND THEN
        PERFORM coupond.refuse('sends_group_exists', format('customer group %s does not exist', NEW.group_id),
            'Check the group id.', 'foreign_key_violation');
    END IF;
    IF grp.shop_id <> NEW.shop_id THEN
        PERFORM coupond.refuse('sends_group_same_shop',
            format('customer group %s belongs to shop %s, not to shop %s', grp.id, grp.shop_id, NEW.shop_id),
            'Send to one of the shop''s own groups.', 'foreign_key_violation');
    END IF;
    SELECT * INTO coupon FROM coupond.coupons WHERE id = NEW.coupon_id;
    IF NOT FOUND THEN
        PERFORM coupond.refuse('sends_coupon_exists', format('coupon %s does not exist', NEW.coupon_id),
            'Check the coupon id.', 'foreign_key_violation');
    END IF;
    IF coupon.shop_id <> NEW.shop_id THEN
        PERFORM coupond.refuse('sends_coupon_same_shop',
            format('coupon %s belongs to shop %s, not to shop %s', coupon.id, coupon.shop_id, NEW.shop_id),
            'Send one of the shop''s own coupons.', 'foreign_key_violation');
    END IF;

    -- Rule 1: on the hour of the shop's own time zone, an hour that happens once, at least 2 hours after now.
    local_time := NEW.scheduled_at AT TIME ZONE shop.time_zone;
    earliest := date_trunc('hour', (now_at + interval '2 hours') AT TIME ZONE shop.time_zone);
    IF earliest < (now_at + interval '2 hours') AT TIME ZONE shop.time_zone THEN
        earliest := earliest + interval '1 hour';
    END IF;
    IF local_time <> date_trunc('hour', local_time) THEN
        PERFORM coupond.refuse('sends_scheduled_on_the_hour',
            format('scheduled time %s (%s) is not on the hour', to_char(local_time, 'YYYY-MM-DD HH24:MI:SS'),
                shop.time_zone),
            format('Choose a whole hour of the shop''s time zone, such as %s or %s.',
                to_char(date_trunc('hour', local_time), 'YYYY-MM-DD HH24:00'),
                to_char(date_trunc('hour', local_time) + interval '1 hour', 'YYYY-MM-DD HH24:00')));
    END IF;
    PERFORM coupond.check_local_hour(local_time, shop.time_zone);
    IF NEW.scheduled_at < now_at + interval '2 hours' THEN
        PERFORM coupond.refuse('sends_scheduled_2h_ahead',
            format('scheduled time %s (%s) is less than 2 hours from now', to_char(local_time, 'YYYY-MM-DD HH24:MI'),
                shop.time_zone),
            format('The earliest time you can choose now is %s (%s).', to_char(earliest, 'YYYY-MM-DD HH24:MI'),
                shop.time_zone));
    END IF;

    -- Rule 2.
    SELECT * INTO problem FROM coupond.coupon_problem(coupon, NEW.group_id, now_at) LIMIT 1;
    IF FOUND THEN
        PERFORM coupond.refuse(problem.rule, problem.message, problem.hint);
    END IF;

    -- Engine-owned columns start from their defaults whatever the writer supplied.
    NEW.created_at := now_at;
    NEW.failure_reason := NULL;
    NEW.recipient_count := NULL;
    NEW.sent_count := 0;
    NEW.failed_count := 0;
    NEW.sms_segments := 0;
    NEW.sms_cost := 0;
    NEW.started_at := NULL;
    NEW.finished_at := NULL;
    NEW.lease_owner := NULL;
    NEW.lease_expires_at := NULL;
    NEW.heartbeat_at := NULL;
    NEW.attempts := 0;
    NEW.coupon_conditions_version := coupon.conditions_version;
    NEW.notice_status := NULL;
    NEW.notice_error := NULL;
    NEW.recipients_after := NULL;
    NEW.dispatched_through := NULL;
    NEW.unknown_count := 0;
    NEW.reconciled_count := 0;
    NEW.notice_dispatched_at := NULL;
    RETURN NEW;
END;
$$;

-- A send starts or fails at its hour, and not before: `UPDATE ... SET status = 'sending'` on a send days away, or
-- 'failed' after the cancel cut-off, acted as a start with no recipients or as a late cancel.
CREATE FUNCTION coupond.check_send_started_when_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coupond.clock_now() < OLD.scheduled_at THEN
        PERFORM coupond.refuse('sends_start_when_due',
            format('send %s is not due until %s and cannot be %s before then', OLD.id,
                to_char(OLD.scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'), NEW.status),
            'The engine starts a send at its hour; to stop it, cancel it with coupond.cancel_send.',
            'object_not_in_prerequisite_state');
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_start_when_due
    BEFORE UPDATE OF status ON coupond.sends
    FOR EACH ROW WHEN (OLD.status = 'not_started' AND NEW.status IN ('sending', 'failed'))
    EXECUTE FUNCTION coupond.check_send_started_when_due();

-- Only a cancelled send can be deleted: deleting one that has not started acted as a cancel after the cut-off, and a
-- started one holds the record of what went out.
CREATE OR REPLACE FUNCTION coupond.check_send_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'not_started' THEN
        PERFORM coupond.refuse('sends_cancel_before_delete',
            format('send %s has not started and cannot be deleted', OLD.id),
            'Cancel it with coupond.cancel_send (until 2 hours before its time); a cancelled send can be deleted.',
            'object_in_use');
    END IF;
    PERFORM coupond.refuse('sends_started_kept',
        format('send %s has started and cannot be deleted', OLD.id),
        'A started send holds the record of what went out; only a cancelled send can be deleted.',
        'object_in_use');
    RETURN NULL;
END;
$$;

DROP TRIGGER sends_started_kept ON coupond.sends;
CREATE TRIGGER sends_kept_unless_cancelled
    BEFORE DELETE ON coupond.sends
    FOR EACH ROW WHEN (OLD.status <> 'cancelled')
    EXECUTE FUNCTION coupond.check_send_delete();

-- Rule 4 at the hour, for the holder of the send's lease: checks the coupon with coupond.coupon_problem (the coupon row
-- share-locked, so that its limits stay as checked until the send has moved on), then moves the send to sending with
-- its member count, or to failed with the reason. No row when `holder` does not hold the lease.
CREATE FUNCTION coupond.start_send(send_id bigint, holder text, lease interval)
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
    SELECT count(*) INTO members
        FROM coupond.group_members m WHERE m.group_id = send.group_id AND m.removed_at IS NULL;
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

-- The due poll's checks of a send's group: a send is startable only when no send of its group is sending and none
-- older is waiting; both are read along these indexes, whatever the group's history.
CREATE INDEX sends_sending_by_group ON coupond.sends (group_id) WHERE status = 'sending';
CREATE INDEX sends_waiting_by_group ON coupond.sends (group_id, scheduled_at, id) WHERE status = 'not_started';

-- Functions that do more than their caller may: they run with the owner's rights, on a search path nobody else can
-- write to (every name inside is schema-qualified).
ALTER FUNCTION coupond.check_new_send() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.check_send_bounds() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.check_send_update() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.check_send_started_when_due() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.check_send_delete() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.notify_send_change() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.cancel_send(bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.claim_coupon(text, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.start_send(bigint, text, interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION coupond.cancel_send(bigint), coupond.claim_coupon(text, bigint),
    coupond.start_send(bigint, text, interval) FROM PUBLIC;

-- The roles (MISSION.md: other systems drive Coupond through PostgreSQL, and nobody can be trusted to insert only
-- good rows). Called by `coupond migrate` after the files, with the names from its configuration; creates a role that
-- does not exist (NOLOGIN: grant it to a login role) and (re)grants what each may do. The owner, who runs this, keeps
-- the schema, the rule clock and the triggers.
CREATE FUNCTION coupond.grant_roles(daemon text, platform text, readonly text) RETURNS void
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
    -- Other systems schedule (the send's own columns only), cancel, claim, and read status.
    EXECUTE format('GRANT INSERT (shop_id, group_id, coupon_id, send_email, send_sms, scheduled_at) '
        'ON coupond.sends TO %I', platform);
    EXECUTE format('GRANT SELECT ON coupond.sends, coupond.group_activity, coupond.clock_override TO %I', platform);
    EXECUTE format('GRANT EXECUTE ON FUNCTION coupond.cancel_send(bigint), coupond.claim_coupon(text, bigint) TO %I',
        platform);
END;
$$;
REVOKE EXECUTE ON FUNCTION coupond.grant_roles(text, text, text) FROM PUBLIC;

-- The send table other systems insert into, with the scheduling and eligibility rules (MISSION.md rules 1, 2, 11)
-- enforced here so that every writer is held to them.

-- The time the rules compare against. Tests and the demo shift it; production leaves the table empty. Only the
-- schema owner can write it (no grants), and `coupond run` warns in the log while it is set.
CREATE TABLE coupond.clock_override (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    shift       interval NOT NULL DEFAULT '0',
    fixed_at    timestamptz
);

CREATE FUNCTION coupond.clock_now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT coalesce(fixed_at, now() + shift) FROM coupond.clock_override), now())
$$;

CREATE TABLE coupond.sends (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shop_id             bigint NOT NULL,
    group_id            bigint NOT NULL,
    coupon_id           bigint NOT NULL,
    send_email          boolean NOT NULL DEFAULT false,
    send_sms            boolean NOT NULL DEFAULT false,
    scheduled_at        timestamptz NOT NULL,
    status              text NOT NULL DEFAULT 'not_started'
        CONSTRAINT sends_status_known
        CHECK (status IN ('not_started', 'sending', 'done', 'failed', 'cancelled')),
    failure_reason      text
        CONSTRAINT sends_failure_reason_known
        CHECK (failure_reason IN ('invalid_coupon', 'coupon_inapplicable', 'insufficient_coupons', 'system_error')),
    -- Set by the engine when the send starts: the group's members at that moment.
    recipient_count     integer,
    sent_count          integer NOT NULL DEFAULT 0,
    failed_count        integer NOT NULL DEFAULT 0,
    sms_segments        bigint NOT NULL DEFAULT 0,
    sms_cost            numeric(16, 4) NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT coupond.clock_now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    -- Engine bookkeeping: which instance works on the send and until when its claim holds.
    lease_owner         text,
    lease_expires_at    timestamptz,
    heartbeat_at        timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    -- The coupon's conditions_version when the send was scheduled; a change by the hour makes it inapplicable.
    coupon_conditions_version integer,
    -- The merchant's notice (rule 8): pending once the send has ended, then sent or failed.
    notice_status       text CONSTRAINT sends_notice_status_known CHECK (notice_status IN ('pending', 'sent', 'failed')),
    notice_error        text,
    CONSTRAINT sends_channel_required CHECK (send_email OR send_sms),
    CONSTRAINT sends_failure_reason_when_failed CHECK ((status = 'failed') = (failure_reason IS NOT NULL)),
    CONSTRAINT sends_counts_non_negative CHECK (sent_count >= 0 AND failed_count >= 0 AND recipient_count >= 0)
);

-- The poll for due work reads only unfinished sends and unsent notices.
CREATE INDEX sends_due ON coupond.sends (scheduled_at)
    WHERE status IN ('not_started', 'sending') OR notice_status = 'pending';
CREATE INDEX sends_by_group ON coupond.sends (group_id, scheduled_at DESC);

-- Raises a refusal that names the broken rule in the constraint field, so callers can tell rules apart.
CREATE FUNCTION coupond.refuse(rule text, message text, hint text, code text DEFAULT 'check_violation')
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- RAISE refuses a NULL option, so a refusal without a hint needs its own statement.
    IF hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = code, CONSTRAINT = rule, MESSAGE = message;
    END IF;
    RAISE EXCEPTION USING ERRCODE = code, CONSTRAINT = rule, MESSAGE = message, HINT = hint;
END;
$$;

CREATE FUNCTION coupond.check_new_send() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    shop            coupond.shops%ROWTYPE;
    grp             coupond.customer_groups%ROWTYPE;
    coupon          coupond.coupons%ROWTYPE;
    now_at          timestamptz := coupond.clock_now();
    local_time      timestamp;
    earliest        timestamp;
    member_count    bigint;
    remaining       bigint;
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

    -- Rule 1: on the hour of the shop's own time zone, at least 2 hours after now.
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
    IF NEW.scheduled_at < now_at + interval '2 hours' THEN
        PERFORM coupond.refuse('sends_scheduled_2h_ahead',
            format('scheduled time %s (%s) is less than 2 hours from now', to_char(local_time, 'YYYY-MM-DD HH24:MI'),
                shop.time_zone),
            format('The earliest time you can choose now is %s (%s).', to_char(earliest, 'YYYY-MM-DD HH24:MI'),
                shop.time_zone));
    END IF;

    -- Rule 2: coupon eligibility.
    IF coupon.kind <> 'get_coupon_link' THEN
        PERFORM coupond.refuse('sends_coupon_get_link',
            format('coupon %s is a %s coupon; only "get coupon link" coupons can be sent', coupon.id, coupon.kind),
            'Create a coupon of the "get coupon link" kind.');
    END IF;
    IF coupon.status = 'deleted' THEN
        PERFORM coupond.refuse('sends_coupon_published', format('coupon %s has been deleted', coupon.id),
            'Choose a published coupon.');
    END IF;
    IF coupon.status <> 'published' THEN
        PERFORM coupond.refuse('sends_coupon_published', format('coupon %s is not published', coupon.id),
            'Publish the coupon first.');
    END IF;
    IF coupon.ends_at IS NOT NULL AND coupon.ends_at <= now_at THEN
        PERFORM coupond.refuse('sends_coupon_not_expired',
            format('coupon %s expired at %s', coupon.id,
                to_char(coupon.ends_at AT TIME ZONE shop.time_zone, 'YYYY-MM-DD HH24:MI')),
            'Extend the coupon''s end time or choose another coupon.');
    END IF;
    IF coupon.target <> 'all_customers' THEN
        PERFORM coupond.refuse('sends_coupon_all_customers',
            format('coupon %s is limited to some customer groups; only coupons for all customers can be sent',
                coupon.id),
            'Set the coupon''s target to all customers.');
    END IF;
    SELECT count(*) INTO member_count
        FROM coupond.group_members WHERE group_id = NEW.group_id AND removed_at IS NULL;
    remaining := coupon.receive_limit::bigint - coupon.claimed_count;
    IF remaining IS NOT NULL AND remaining <= member_count THEN
        PERFORM coupond.refuse('sends_coupon_remaining_limit',
            format('coupon %s can be received %s more times, which is not more than the group''s %s customers',
                coupon.id, remaining, member_count),
            'Raise the coupon''s receive limit above the group''s customer count.');
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
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_check_new
    BEFORE INSERT ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.check_new_send();

-- What a send was asked to do never changes after it is scheduled, and its status only moves forward.
CREATE FUNCTION coupond.check_send_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    now_at  timestamptz := coupond.clock_now();
BEGIN
    IF (NEW.shop_id, NEW.group_id, NEW.coupon_id, NEW.send_email, NEW.send_sms, NEW.scheduled_at, NEW.created_at)
        IS DISTINCT FROM
       (OLD.shop_id, OLD.group_id, OLD.coupon_id, OLD.send_email, OLD.send_sms, OLD.scheduled_at, OLD.created_at)
    THEN
        PERFORM coupond.refuse('sends_immutable',
            format('send %s cannot be changed after it is scheduled', OLD.id),
            'Cancel it and schedule a new send.', 'object_not_in_prerequisite_state');
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT ((OLD.status = 'not_started' AND NEW.status IN ('sending', 'failed', 'cancelled'))
             OR (OLD.status = 'sending' AND NEW.status IN ('done', 'failed'))) THEN
            PERFORM coupond.refuse('sends_status_forward',
                format('send %s cannot go from %s to %s', OLD.id, OLD.status, NEW.status),
                'Only a not started send can be cancelled, and finished sends stay as they are.',
                'object_not_in_prerequisite_state');
        END IF;
        IF NEW.status = 'cancelled' AND now_at > OLD.scheduled_at - interval '2 hours' THEN
            PERFORM coupond.refuse('cancel_until_2h_before',
                format('send %s can no longer be cancelled: cancelling closed at %s, 2 hours before its time',
                    OLD.id, to_char((OLD.scheduled_at - interval '2 hours') AT TIME ZONE 'UTC',
                        'YYYY-MM-DD HH24:MI "UTC"')),
                'A send can be cancelled until 2 hours before its scheduled time.',
                'object_not_in_prerequisite_state');
        END IF;
        IF NEW.status = 'sending' THEN
            NEW.started_at := coalesce(NEW.started_at, now_at);
        ELSIF NEW.status IN ('done', 'failed', 'cancelled') THEN
            NEW.finished_at := coalesce(NEW.finished_at, now_at);
        END IF;
    ELSIF OLD.status IN ('done', 'failed', 'cancelled')
        AND (NEW.failure_reason, NEW.recipient_count, NEW.sent_count, NEW.failed_count, NEW.sms_segments,
             NEW.sms_cost, NEW.started_at, NEW.finished_at, NEW.coupon_conditions_version)
            IS DISTINCT FROM
            (OLD.failure_reason, OLD.recipient_count, OLD.sent_count, OLD.failed_count, OLD.sms_segments,
             OLD.sms_cost, OLD.started_at, OLD.finished_at, OLD.coupon_conditions_version)
    THEN
        PERFORM coupond.refuse('sends_finished_immutable', format('send %s is %s and can no longer change',
                OLD.id, OLD.status),
            NULL, 'object_not_in_prerequisite_state');
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_check_update
    BEFORE UPDATE ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.check_send_update();

-- Wakes the daemons (LISTEN coupond_sends) as soon as a send is scheduled or cancelled.
CREATE FUNCTION coupond.notify_send_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('coupond_sends', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER sends_notify
    AFTER INSERT OR UPDATE OF status ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.notify_send_change();

-- Rule 11: cancel a not started send until 2 hours before its time. Returns the cancelled send.
CREATE FUNCTION coupond.cancel_send(send_id bigint) RETURNS coupond.sends
LANGUAGE plpgsql AS $$
DECLARE
    send    coupond.sends%ROWTYPE;
BEGIN
    -- The row lock serialises concurrent cancels and the engine's start; the loser sees the winner's status.
    SELECT * INTO send FROM coupond.sends WHERE id = send_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM coupond.refuse('cancel_send_exists', format('send %s does not exist', send_id),
            'Check the send id.', 'no_data_found');
    END IF;
    IF send.status <> 'not_started' THEN
        PERFORM coupond.refuse('cancel_only_not_started',
            format('send %s is %s and can no longer be cancelled', send_id,
                CASE send.status WHEN 'cancelled' THEN 'already cancelled'
                                 WHEN 'sending' THEN 'already sending'
                                 ELSE 'already ' || send.status END),
            'Only a send that has not started can be cancelled.', 'object_not_in_prerequisite_state');
    END IF;
    UPDATE coupond.sends SET status = 'cancelled' WHERE id = send_id RETURNING * INTO send;
    RETURN send;
END;
$$;

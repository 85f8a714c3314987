-- Watch the coupon while cancel is still possible (issue #11). Between scheduling and 2 hours before the hour (the last
-- moment rule 11 lets the merchant cancel), the daemon re-checks each scheduled send's coupon as rule 4 will at the
-- hour: unpublished, deleted, expired by then, retargeted, conditions changed, or a remaining limit no longer enough
-- for the group. A send that would fail gets one email to the merchant per problem, naming it and the last moment to
-- cancel, recorded on the send.
--
-- The check runs hourly and at once when a coupon or a send changes (NOTIFY coupond_coupons from the trigger below,
-- coupond_sends as before). Marking a warning due and taking it up to email are two statements, so any number of
-- instances send each warning once; one that dies between the email and its record leaves the warning to be taken up
-- again after a minute, which may email the merchant twice rather than not at all.

ALTER TABLE coupond.sends
    ADD COLUMN warning_rule text,
    ADD COLUMN warning text,
    ADD COLUMN warning_hint text,
    ADD COLUMN warning_status text CONSTRAINT sends_warning_status_known
        CHECK (warning_status IN ('pending', 'sent', 'failed')),
    ADD COLUMN warning_attempt_at timestamptz,
    ADD COLUMN warned_at timestamptz;

COMMENT ON COLUMN coupond.sends.warning_rule IS
    'The rule the coupon broke when the merchant was last warned (sends_coupon_published, ...); NULL when never.';
COMMENT ON COLUMN coupond.sends.warning IS 'What the warning said was wrong, as the rule''s message.';
COMMENT ON COLUMN coupond.sends.warning_status IS
    'pending until the warning email is handed to the gateway and answered, then sent or failed.';
COMMENT ON COLUMN coupond.sends.warned_at IS 'When the merchant''s warning email was sent.';

-- Marks a warning due on every send that can still be cancelled and would fail at its hour for a reason it was not
-- yet warned of; returns how many.
CREATE FUNCTION coupond.mark_coupon_warnings() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    marked integer;
BEGIN
    WITH problems AS (
        SELECT s.id, p.rule, p.message, p.hint
        FROM coupond.sends s
        LEFT JOIN coupond.coupons c ON c.id = s.coupon_id
        CROSS JOIN LATERAL (
            SELECT * FROM coupond.coupon_problem(c, s.group_id, s.scheduled_at, s.coupon_conditions_version) p
            WHERE p.reason IS NOT NULL LIMIT 1
        ) AS p
        WHERE s.status = 'not_started' AND s.scheduled_at > coupond.clock_now() + interval '2 hours'
    )
    UPDATE coupond.sends s SET warning_rule = p.rule, warning = p.message, warning_hint = p.hint,
        warning_status = 'pending', warning_attempt_at = NULL, warned_at = NULL
    FROM problems p
    WHERE s.id = p.id AND s.warning_rule IS DISTINCT FROM p.rule;
    GET DIAGNOSTICS marked = ROW_COUNT;
    RETURN marked;
END;
$$;

-- A coupon change can make a scheduled send fail at its hour: the watch looks again at once.
CREATE FUNCTION coupond.notify_coupon_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('coupond_coupons', coalesce(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER coupons_notify_change
    AFTER UPDATE OF status, kind, target, ends_at, receive_limit, claimed_count, conditions_version OR DELETE
    ON coupond.coupons
    FOR EACH ROW EXECUTE FUNCTION coupond.notify_coupon_change();

-- The warnings' columns are the daemon's, as the counts are: a new send starts without one.
CREATE FUNCTION coupond.clear_new_send_warning() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.warning_rule := NULL;
    NEW.warning := NULL;
    NEW.warning_hint := NULL;
    NEW.warning_status := NULL;
    NEW.warning_attempt_at := NULL;
    NEW.warned_at := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_warning_starts_empty
    BEFORE INSERT ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.clear_new_send_warning();

ALTER FUNCTION coupond.notify_coupon_change() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.clear_new_send_warning() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The activity list shows the warning beside the status.
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
    s.scheduled_at - interval '2 hours'             AS cancel_until
FROM coupond.sends s
JOIN coupond.shops sh ON sh.id = s.shop_id
LEFT JOIN coupond.customer_groups g ON g.id = s.group_id
LEFT JOIN coupond.coupons c ON c.id = s.coupon_id;

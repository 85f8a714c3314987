-- Per-channel results and the funnel (issue #10). A customer counts as sent when any channel reached them (rule 9's
-- headline stays), so a customer reached by email and not by SMS was invisible: counted as sent, absent from the
-- report. Each send now carries, per channel, how many customers the channel reached, how many it failed, how many
-- followed the channel's link and how many of those it reached claimed the coupon.
--
-- Sent and failed move when a customer's outcome is final, in the same statement as sent_count and failed_count, so
-- email_sent_count + email_failed_count is the number of final customers the send emails. Clicks and claims are
-- counted by a trigger on the recipient row, once per customer: the first click of each channel's link, the first
-- claim.

ALTER TABLE coupond.sends
    ADD COLUMN email_sent_count integer NOT NULL DEFAULT 0,
    ADD COLUMN email_failed_count integer NOT NULL DEFAULT 0,
    ADD COLUMN email_clicked_count integer NOT NULL DEFAULT 0,
    ADD COLUMN email_claimed_count integer NOT NULL DEFAULT 0,
    ADD COLUMN sms_sent_count integer NOT NULL DEFAULT 0,
    ADD COLUMN sms_failed_count integer NOT NULL DEFAULT 0,
    ADD COLUMN sms_clicked_count integer NOT NULL DEFAULT 0,
    ADD COLUMN sms_claimed_count integer NOT NULL DEFAULT 0,
    ADD COLUMN claimed_count integer NOT NULL DEFAULT 0;

COMMENT ON COLUMN coupond.sends.email_sent_count IS 'Final customers the email reached.';
COMMENT ON COLUMN coupond.sends.email_failed_count IS 'Final customers the email did not reach (see the report).';
COMMENT ON COLUMN coupond.sends.email_clicked_count IS 'Customers who followed the email''s short link at least once.';
COMMENT ON COLUMN coupond.sends.email_claimed_count IS 'Customers the email reached who claimed the coupon.';
COMMENT ON COLUMN coupond.sends.sms_sent_count IS 'Final customers the SMS reached.';
COMMENT ON COLUMN coupond.sends.sms_failed_count IS 'Final customers the SMS did not reach (see the report).';
COMMENT ON COLUMN coupond.sends.sms_clicked_count IS 'Customers who followed the SMS''s short link at least once.';
COMMENT ON COLUMN coupond.sends.sms_claimed_count IS 'Customers the SMS reached who claimed the coupon.';
COMMENT ON COLUMN coupond.sends.claimed_count IS 'Customers of the send who claimed the coupon through its link.';

-- Sends recorded before this migration: their final customers, counted once.
UPDATE coupond.sends s SET
    email_sent_count = t.email_sent, email_failed_count = t.email_failed,
    sms_sent_count = t.sms_sent, sms_failed_count = t.sms_failed,
    sms_clicked_count = t.sms_clicked, claimed_count = t.claimed,
    email_claimed_count = t.email_claimed, sms_claimed_count = t.sms_claimed
FROM (
    SELECT send_id,
        count(*) FILTER (WHERE email_status = 'sent') AS email_sent,
        count(*) FILTER (WHERE email_status = 'failed') AS email_failed,
        count(*) FILTER (WHERE sms_status = 'sent') AS sms_sent,
        count(*) FILTER (WHERE sms_status = 'failed') AS sms_failed,
        count(*) FILTER (WHERE sms_clicked_at IS NOT NULL) AS sms_clicked,
        count(*) FILTER (WHERE claimed_at IS NOT NULL) AS claimed,
        count(*) FILTER (WHERE claimed_at IS NOT NULL AND email_status = 'sent') AS email_claimed,
        count(*) FILTER (WHERE claimed_at IS NOT NULL AND sms_status = 'sent') AS sms_claimed
    FROM coupond.send_recipients
    WHERE coalesce(email_status, 'failed') IN ('sent', 'failed') AND coalesce(sms_status, 'failed') IN ('sent', 'failed')
    GROUP BY send_id
) AS t
WHERE s.id = t.send_id;

-- One short-link code per recipient serves both channels: /c/<code> in the SMS, /e/<code> in the email. A second
-- code (and a second unique index to keep up on every insert) would buy nothing: whoever holds either link holds the
-- claim link it leads to.
ALTER TABLE coupond.send_recipients RENAME COLUMN sms_link_code TO link_code;
ALTER TABLE coupond.send_recipients
    RENAME CONSTRAINT send_recipients_sms_link_code_length TO send_recipients_link_code_length;
ALTER INDEX coupond.send_recipients_sms_link_code RENAME TO send_recipients_link_code;
ALTER TABLE coupond.send_recipients ADD COLUMN email_clicked_at timestamptz;

COMMENT ON COLUMN coupond.send_recipients.link_code IS
    'The short links'' code: <public_base_url>/c/<base62 of these 13 bytes> (SMS), /e/<code> (email); NULL without.';
COMMENT ON COLUMN coupond.send_recipients.email_clicked_at IS
    'When the customer first followed the email''s short link.';

-- The HTTP listener's redirect: the recipient behind a code, with the first click of the channel recorded.
CREATE FUNCTION coupond.follow_link(code bytea, channel text)
RETURNS TABLE (send_id bigint, customer_id bigint, login_url text, coupon_id bigint)
LANGUAGE sql AS $$
    UPDATE coupond.send_recipients r SET
        email_clicked_at = CASE WHEN follow_link.channel = 'email' THEN coalesce(r.email_clicked_at, now())
                                ELSE r.email_clicked_at END,
        sms_clicked_at = CASE WHEN follow_link.channel = 'sms' THEN coalesce(r.sms_clicked_at, now()) ELSE r.sms_clicked_at END
    FROM coupond.sends s JOIN coupond.shops sh ON sh.id = s.shop_id
    WHERE r.link_code = follow_link.code AND s.id = r.send_id AND follow_link.channel IN ('email', 'sms')
    RETURNING r.send_id, r.customer_id, sh.login_url, s.coupon_id
$$;

-- Clicks and claims reach the send's counters here, whoever records them (coupond.follow_link, coupond.claim_coupon).
-- The engine's outcome updates do not name these columns, so the trigger never fires on the hot path.
CREATE FUNCTION coupond.count_engagement() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    claimed boolean := OLD.claimed_at IS NULL AND NEW.claimed_at IS NOT NULL;
BEGIN
    UPDATE coupond.sends s SET
        email_clicked_count = s.email_clicked_count
            + (OLD.email_clicked_at IS NULL AND NEW.email_clicked_at IS NOT NULL)::int,
        sms_clicked_count = s.sms_clicked_count + (OLD.sms_clicked_at IS NULL AND NEW.sms_clicked_at IS NOT NULL)::int,
        claimed_count = s.claimed_count + claimed::int,
        -- A channel the send does not use has a NULL status.
        email_claimed_count = s.email_claimed_count + (claimed AND NEW.email_status IS NOT DISTINCT FROM 'sent')::int,
        sms_claimed_count = s.sms_claimed_count + (claimed AND NEW.sms_status IS NOT DISTINCT FROM 'sent')::int
    WHERE s.id = NEW.send_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER send_recipients_count_engagement
AFTER UPDATE OF email_clicked_at, sms_clicked_at, claimed_at ON coupond.send_recipients
FOR EACH ROW
WHEN ((OLD.email_clicked_at IS NULL AND NEW.email_clicked_at IS NOT NULL)
   OR (OLD.sms_clicked_at IS NULL AND NEW.sms_clicked_at IS NOT NULL)
   OR (OLD.claimed_at IS NULL AND NEW.claimed_at IS NOT NULL))
EXECUTE FUNCTION coupond.count_engagement();

-- The counters are the engine's and the trigger's: a new send starts them at zero whatever its writer supplied.
CREATE FUNCTION coupond.zero_channel_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.email_sent_count := 0;
    NEW.email_failed_count := 0;
    NEW.email_clicked_count := 0;
    NEW.email_claimed_count := 0;
    NEW.sms_sent_count := 0;
    NEW.sms_failed_count := 0;
    NEW.sms_clicked_count := 0;
    NEW.sms_claimed_count := 0;
    NEW.claimed_count := 0;
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_channel_counts_start_at_zero
BEFORE INSERT ON coupond.sends
FOR EACH ROW EXECUTE FUNCTION coupond.zero_channel_counts();

-- Counting a claim updates the send's row, which the claimer's role may not touch: the count runs with the owner's
-- rights, as the claim does.
ALTER FUNCTION coupond.count_engagement() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.zero_channel_counts() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Rule 10's list gains each channel's results and the funnel: reached, then followed the link, then claimed.
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
    CASE WHEN s.sent_count > 0 THEN round(100.0 * s.claimed_count / s.sent_count, 1) END AS claimed_percent
FROM coupond.sends s
JOIN coupond.shops sh ON sh.id = s.shop_id
LEFT JOIN coupond.customer_groups g ON g.id = s.group_id
LEFT JOIN coupond.coupons c ON c.id = s.coupon_id;

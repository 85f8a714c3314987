-- One row per customer per send, and the group activity list.

CREATE TABLE coupond.send_recipients (
    send_id             bigint NOT NULL REFERENCES coupond.sends (id),
    customer_id         bigint NOT NULL,
    -- Addresses as they were at send time, so the failure report shows what was tried.
    email               text,
    mobile              text,
    -- SHA-256 of the claim token, written before the first message goes out; the token itself is never stored.
    token_hash          bytea CONSTRAINT send_recipients_token_hash_length CHECK (length(token_hash) = 32),
    -- NULL when the send does not use the channel.
    email_status        text CHECK (email_status IN ('pending', 'sent', 'failed')),
    email_error         text,
    email_message_id    text,
    email_attempts      smallint NOT NULL DEFAULT 0,
    sms_status          text CHECK (sms_status IN ('pending', 'sent', 'failed')),
    sms_error           text,
    sms_message_id      text,
    sms_attempts        smallint NOT NULL DEFAULT 0,
    sms_segments        smallint,
    sms_cost            numeric(12, 4),
    claimed_at          timestamptz,
    PRIMARY KEY (send_id, customer_id),
    CONSTRAINT send_recipients_error_known CHECK (
        email_error IS NULL OR email_error IN
            ('no_email_address', 'no_consent', 'gateway_refused', 'retries_exhausted', 'system_error')),
    CONSTRAINT send_recipients_sms_error_known CHECK (
        sms_error IS NULL OR sms_error IN
            ('no_mobile_number', 'invalid_mobile_number', 'no_consent', 'gateway_refused', 'retries_exhausted',
             'system_error'))
) WITH (fillfactor = 80); -- outcomes are written by UPDATE; room on the page keeps them HOT

CREATE UNIQUE INDEX send_recipients_token ON coupond.send_recipients (token_hash);
-- The failure report and the resume after a crash read the unfinished or failed rows of one send.
CREATE INDEX send_recipients_unfinished ON coupond.send_recipients (send_id, customer_id)
    WHERE email_status = 'pending' OR sms_status = 'pending';

-- Human-readable reasons, shared by the failure report and the status command.
CREATE FUNCTION coupond.reason_text(reason text) RETURNS text
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
        WHEN 'gateway_refused' THEN 'Refused by the gateway'
        WHEN 'retries_exhausted' THEN 'Could not be delivered after several attempts'
        ELSE reason
    END
$$;

-- Rule 10: every send of a group with its status, counts, reason and times, newest first per group.
CREATE VIEW coupond.group_activity AS
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
    s.finished_at
FROM coupond.sends s
JOIN coupond.shops sh ON sh.id = s.shop_id
LEFT JOIN coupond.customer_groups g ON g.id = s.group_id
LEFT JOIN coupond.coupons c ON c.id = s.coupon_id;

-- Messages whose fate is unknown (and, beside them, SMS refused before sending for being over 1,600 characters).
-- A request that may have reached a provider, with no answer saying whether it did
-- (a timeout after the body was written, a connection closed before the status line, a crash or a lost lease with
-- the message in flight), is neither sent nor failed. SendGrid and Twilio do not drop a repeated message, so such a
-- message is not sent again blind: it is 'unknown' until it is reconciled (found at the provider, or not found and
-- sent) or the operator's policy decides (resent, or failed as 'delivery_unconfirmed').

ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_email_status_check;
ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_sms_status_check;
ALTER TABLE coupond.send_recipients
    ADD CONSTRAINT send_recipients_email_status_known
        CHECK (email_status IN ('pending', 'unknown', 'sent', 'failed')),
    ADD CONSTRAINT send_recipients_sms_status_known
        CHECK (sms_status IN ('pending', 'unknown', 'sent', 'failed'));

ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_error_known;
ALTER TABLE coupond.send_recipients DROP CONSTRAINT send_recipients_sms_error_known;
ALTER TABLE coupond.send_recipients
    ADD CONSTRAINT send_recipients_error_known CHECK (
        email_error IS NULL OR email_error IN
            ('no_email_address', 'no_consent', 'gateway_refused', 'retries_exhausted', 'delivery_unconfirmed',
             'system_error')),
    ADD CONSTRAINT send_recipients_sms_error_known CHECK (
        sms_error IS NULL OR sms_error IN
            ('no_mobile_number', 'invalid_mobile_number', 'no_consent', 'gateway_refused', 'retries_exhausted',
             'delivery_unconfirmed', 'message_too_long', 'system_error'));

-- How a channel's unknown outcome was settled, kept for the merchant and the operator: what the provider's own
-- records said, or what the operator's on_unknown policy chose where the provider cannot be asked.
ALTER TABLE coupond.send_recipients
    ADD COLUMN email_resolution text CONSTRAINT send_recipients_email_resolution_known CHECK (
        email_resolution IN ('found_at_provider', 'not_found_resent', 'resent_by_policy', 'skipped_by_policy')),
    ADD COLUMN sms_resolution text CONSTRAINT send_recipients_sms_resolution_known CHECK (
        sms_resolution IN ('found_at_provider', 'not_found_resent', 'resent_by_policy', 'skipped_by_policy'));

COMMENT ON COLUMN coupond.send_recipients.email_resolution IS
    'How an unknown email outcome was settled: found_at_provider, not_found_resent, resent_by_policy, skipped_by_policy.';
COMMENT ON COLUMN coupond.send_recipients.sms_resolution IS
    'How an unknown SMS outcome was settled: found_at_provider, not_found_resent, resent_by_policy, skipped_by_policy.';

-- The last customer of the last batch handed to the gateways. After a crash, a recipient still pending at or before
-- it may have been sent: on a channel whose provider does not drop repeats, the next holder treats it as unknown.
ALTER TABLE coupond.sends
    ADD COLUMN dispatched_through bigint,
    ADD COLUMN unknown_count integer NOT NULL DEFAULT 0 CONSTRAINT sends_unknown_count_not_negative
        CHECK (unknown_count >= 0),
    ADD COLUMN reconciled_count integer NOT NULL DEFAULT 0;

-- When the merchant's notice was handed to the gateway. A holder that finds it set with the notice still pending knows
-- the notice may have gone out, and does not send it again blind.
ALTER TABLE coupond.sends ADD COLUMN notice_dispatched_at timestamptz;

COMMENT ON COLUMN coupond.sends.notice_dispatched_at IS
    'When the merchant notice was handed to the gateway; with notice_status pending, it may have gone out.';
COMMENT ON COLUMN coupond.sends.dispatched_through IS
    'Last customer id of the last batch handed to the gateways; pending rows up to it may have been sent.';
COMMENT ON COLUMN coupond.sends.unknown_count IS
    'Messages whose delivery is unknown and not yet settled; the send is not done while any remain.';
COMMENT ON COLUMN coupond.sends.reconciled_count IS
    'Messages whose unknown outcome was settled, by the provider''s records or the on_unknown policy.';

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
        WHEN 'gateway_refused' THEN 'Refused by the gateway'
        WHEN 'retries_exhausted' THEN 'Could not be delivered after several attempts'
        WHEN 'delivery_unconfirmed' THEN 'Delivery unconfirmed: the gateway may have sent it, and no answer said so'
        WHEN 'message_too_long' THEN 'Message too long: the SMS is over the 1,600 characters providers take'
        ELSE reason
    END
$$;

-- The activity list shows the unknown and settled messages beside the counts (rule 10).
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
    s.reconciled_count
FROM coupond.sends s
JOIN coupond.shops sh ON sh.id = s.shop_id
LEFT JOIN coupond.customer_groups g ON g.id = s.group_id
LEFT JOIN coupond.coupons c ON c.id = s.coupon_id;

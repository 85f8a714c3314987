-- Customer addresses are untrusted input (issue #19): a customer's email comes from other systems and from shoppers
-- typing into forms, and with the SMTP provider it reaches the envelope's `RCPT TO:<...>` and the `To:` header. An
-- address carrying CR LF, `<` or `>` could add recipients or a whole second mail transaction. An email address is now
-- reachable only when it is a plain RFC 5321 mailbox; otherwise that customer's email fails with
-- 'invalid_email_address', recorded and in the failure report, while the rest of the send goes on.

-- Whether `email` is a plain addr-spec a mail server takes: a dot-atom local part of at most 64 characters (RFC 5322
-- atext: letters, digits and !#$%&'*+-/=?^_`{|}~), `@`, a domain of dot-separated labels of letters, digits and
-- inner hyphens of at most 63 characters each, in all at most 254 characters (RFC 5321's path of 256 less the angle
-- brackets). ASCII only: no control, space, quote, bracket or non-ASCII character can pass, so nothing in it can end an
-- SMTP command line or a header. Internationalised domains arrive as their punycode (xn--) form.
CREATE FUNCTION coupond.email_address_valid(email text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT octet_length(email) <= 254
       AND email ~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&''*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$'
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

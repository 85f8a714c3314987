-- Short claim links for SMS (issue #10). The full link (the shop's login URL, a 43-character token and three UTM
-- parameters) is about 160 characters on its own, so every SMS took two segments and the merchant paid double. An SMS
-- now carries <public_base_url>/c/<code>, 18 base62 characters for 104 random bits, which `coupond run`'s HTTP
-- listener resolves to the full link, recording the first click.
--
-- The code is drawn by the database when the recipient row is written, and only for a channel that will be sent,
-- so the unique index costs one insert per SMS recipient and none on the outcome's (HOT) update.

ALTER TABLE coupond.send_recipients
    ADD COLUMN sms_link_code bytea
        CONSTRAINT send_recipients_sms_link_code_length CHECK (length(sms_link_code) = 13),
    ADD COLUMN sms_clicked_at timestamptz;

CREATE UNIQUE INDEX send_recipients_sms_link_code ON coupond.send_recipients (sms_link_code)
    WHERE sms_link_code IS NOT NULL;

-- 104 random bits: a version 4 UUID's bytes without the two that carry its version and variant bits.
CREATE FUNCTION coupond.new_link_code() RETURNS bytea
LANGUAGE sql VOLATILE AS $$
    SELECT substring(b FROM 1 FOR 6) || substring(b FROM 10 FOR 7) FROM uuid_send(gen_random_uuid()) AS b
$$;

COMMENT ON COLUMN coupond.send_recipients.sms_link_code IS
    'The code of the SMS''s short link, <public_base_url>/c/<base62 of these 13 bytes>; NULL without a short link.';
COMMENT ON COLUMN coupond.send_recipients.sms_clicked_at IS
    'When the customer first followed the SMS''s short link.';

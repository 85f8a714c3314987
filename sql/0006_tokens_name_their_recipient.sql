-- Claim tokens that name their recipient. A token was 43 characters of HMAC, found through claim_tokens, whose
-- primary key on a random hash took one insert at a random place of a growing B-tree per customer: a third of
-- PostgreSQL's work per customer in a million-customer send. A token is now `<send>.<customer>.<hmac>`: the two ids
-- find the recipient's row by its primary key, and the hash beside it proves the token, so no index on the hash is
-- needed. The HMAC still makes a token impossible to forge without the key; the ids only say whose it is.
--
-- The hash is written with the customer's outcome, in the same HOT update. The token is derived from the send and
-- the customer, so a message sent again after a crash carries the same token, and whichever attempt is recorded
-- stores the hash that every copy of the link matches.
--
-- Tokens issued before this migration stay valid through claim_tokens, which receives no new rows.

ALTER TABLE coupond.send_recipients
    ADD COLUMN token_hash bytea CONSTRAINT send_recipients_token_hash_length CHECK (length(token_hash) = 32);

-- The outcome's row version is now 36 bytes longer than the row the start wrote; at 45% a page of short rows no
-- longer holds both versions of every row, and the updates that do not fit leave the page and write every index.
ALTER TABLE coupond.send_recipients SET (fillfactor = 40);

COMMENT ON COLUMN coupond.send_recipients.token_hash IS
    'SHA-256 of the claim token `<send>.<customer>.<hmac>`, written with the outcome; the token is never stored.';
COMMENT ON TABLE coupond.claim_tokens IS
    'Hashes of claim tokens issued before migration 0006 (43-character tokens); new tokens name their recipient.';

-- The recipient a token was issued to, or no row.
CREATE FUNCTION coupond.token_recipient(token text)
RETURNS SETOF coupond.send_recipients
LANGUAGE sql STABLE AS $$
    SELECT r.* FROM coupond.send_recipients r,
        regexp_match(token, '^([0-9]{1,18})\.([0-9]{1,18})\.[A-Za-z0-9_-]{43}$') AS ids
    WHERE r.send_id = ids[1]::bigint AND r.customer_id = ids[2]::bigint
      AND r.token_hash = sha256(convert_to(token, 'UTF8'))
    UNION ALL
    SELECT r.* FROM coupond.claim_tokens t
        JOIN coupond.send_recipients r ON r.send_id = t.send_id AND r.customer_id = t.customer_id
    WHERE length(token) = 43 AND t.token_hash = sha256(convert_to(token, 'UTF8'))
$$;

-- Rule 15, as in 0005_hot_outcomes.sql, with the recipient found by coupond.token_recipient.
CREATE OR REPLACE FUNCTION coupond.claim_coupon(token text, customer_id bigint)
RETURNS TABLE (coupon_id bigint, send_id bigint, claimed_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    recipient   coupond.send_recipients%ROWTYPE;
    send        coupond.sends%ROWTYPE;
    coupon      coupond.coupons%ROWTYPE;
    now_at      timestamptz := coupond.clock_now();
    previous    bigint;
BEGIN
    SELECT * INTO recipient FROM coupond.token_recipient(token) LIMIT 1;
    IF NOT FOUND THEN
        PERFORM coupond.refuse('claim_token_valid', 'this claim link is not valid',
            'Check that the whole link was opened.', 'invalid_authorization_specification');
    END IF;
    IF recipient.customer_id <> claim_coupon.customer_id THEN
        PERFORM coupond.refuse('claim_customer_matches', 'this claim link was issued to another customer',
            'Log in with the account the link was sent to.', 'invalid_authorization_specification');
    END IF;
    SELECT * INTO send FROM coupond.sends s WHERE s.id = recipient.send_id;
    -- The coupon row lock serialises every claim of the coupon, so the limit checks below cannot race.
    SELECT * INTO coupon FROM coupond.coupons c WHERE c.id = send.coupon_id FOR UPDATE;
    IF NOT FOUND OR coupon.status <> 'published' OR (coupon.ends_at IS NOT NULL AND coupon.ends_at <= now_at) THEN
        PERFORM coupond.refuse('claim_coupon_valid', 'this coupon is no longer available',
            'The coupon was withdrawn or has expired.', 'object_not_in_prerequisite_state');
    END IF;
    IF coupon.starts_at IS NOT NULL AND coupon.starts_at > now_at THEN
        PERFORM coupond.refuse('claim_coupon_started',
            format('this coupon can be claimed from %s', to_char(coupon.starts_at AT TIME ZONE 'UTC',
                'YYYY-MM-DD HH24:MI "UTC"')),
            'Come back when the coupon starts.', 'object_not_in_prerequisite_state');
    END IF;
    SELECT count(*) INTO previous FROM coupond.coupon_claims cc
        WHERE cc.coupon_id = coupon.id AND cc.customer_id = claim_coupon.customer_id;
    IF previous >= coupon.per_customer_limit THEN
        PERFORM coupond.refuse('claim_once_per_customer', 'you have already claimed this coupon',
            'The coupon is in your account.', 'unique_violation');
    END IF;
    IF coupon.receive_limit IS NOT NULL AND coupon.claimed_count >= coupon.receive_limit THEN
        PERFORM coupond.refuse('claim_limit_reached', 'all of these coupons have been claimed',
            'The coupon reached its receive limit.', 'object_not_in_prerequisite_state');
    END IF;

    UPDATE coupond.coupons c SET claimed_count = c.claimed_count + 1 WHERE c.id = coupon.id;
    INSERT INTO coupond.coupon_claims (coupon_id, customer_id, send_id, claimed_at)
        VALUES (coupon.id, claim_coupon.customer_id, send.id, now_at);
    UPDATE coupond.send_recipients r SET claimed_at = now_at
        WHERE r.send_id = recipient.send_id AND r.customer_id = recipient.customer_id;
    RETURN QUERY SELECT coupon.id, send.id, now_at;
END;
$$;

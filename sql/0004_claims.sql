-- Rule 15: a customer claims the coupon with the token from their link, once, while the coupon is valid and under its
-- receive limit. The store calls coupond.claim_coupon(token, customer_id) after the customer has logged in.

CREATE TABLE coupond.coupon_claims (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    coupon_id   bigint NOT NULL,
    customer_id bigint NOT NULL,
    send_id     bigint NOT NULL REFERENCES coupond.sends (id),
    claimed_at  timestamptz NOT NULL DEFAULT coupond.clock_now()
);

CREATE INDEX coupon_claims_by_customer ON coupond.coupon_claims (coupon_id, customer_id);

-- Returns the claim; refuses with a constraint name that says why otherwise.
CREATE FUNCTION coupond.claim_coupon(token text, customer_id bigint)
RETURNS TABLE (coupon_id bigint, send_id bigint, claimed_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    recipient   coupond.send_recipients%ROWTYPE;
    send        coupond.sends%ROWTYPE;
    coupon      coupond.coupons%ROWTYPE;
    now_at      timestamptz := coupond.clock_now();
    previous    bigint;
BEGIN
    SELECT * INTO recipient FROM coupond.send_recipients r
        WHERE r.token_hash = sha256(convert_to(token, 'UTF8'));
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

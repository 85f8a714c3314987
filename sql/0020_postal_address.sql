-- The shop's postal address (issue #11): CAN-SPAM wants the sender's postal address in every commercial email, and
-- the email footer shows it. A send with email is refused at scheduling while its shop has none, and a shop cannot
-- drop its address while such a send is still to go out.

ALTER TABLE coupond.shops
    ADD COLUMN postal_address text,
    ADD CONSTRAINT shops_postal_address_bounded
        CHECK (postal_address IS NULL OR length(btrim(postal_address)) BETWEEN 1 AND 300);

COMMENT ON COLUMN coupond.shops.postal_address IS
    'Where the shop can be reached by post, on one line (street, city, postcode, country); shown in every email.';

CREATE FUNCTION coupond.check_postal_address() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.send_email AND NOT EXISTS (
        SELECT 1 FROM coupond.shops sh WHERE sh.id = NEW.shop_id AND sh.postal_address IS NOT NULL
    ) THEN
        PERFORM coupond.refuse('sends_email_needs_postal_address',
            format('shop %s has no postal address, which every email must show', NEW.shop_id),
            'Set coupond.shops.postal_address, or send by SMS only.');
    END IF;
    RETURN NEW;
END;
$$;

-- Between sends_check_new and sends_quiet_hours_kept (triggers fire in name order).
CREATE TRIGGER sends_postal_address_kept
    BEFORE INSERT ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.check_postal_address();

CREATE FUNCTION coupond.check_postal_address_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    waiting bigint;
BEGIN
    SELECT min(s.id) INTO waiting FROM coupond.sends s
    WHERE s.shop_id = NEW.id AND s.send_email AND s.status IN ('not_started', 'sending');
    IF waiting IS NOT NULL THEN
        PERFORM coupond.refuse('shops_postal_address_in_use',
            format('shop %s still has sends with email to go out (send %s), whose emails show its postal address',
                NEW.id, waiting),
            'Change the address instead of removing it, or cancel those sends first.');
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER shops_postal_address_kept
    BEFORE UPDATE OF postal_address ON coupond.shops
    FOR EACH ROW WHEN (NEW.postal_address IS NULL AND OLD.postal_address IS NOT NULL)
    EXECUTE FUNCTION coupond.check_postal_address_in_use();

ALTER FUNCTION coupond.check_postal_address() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupond.check_postal_address_in_use() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Quiet hours per shop (issue #11): a shop may set hours of its own day in which nothing is sent, such as 21:00 to
-- 09:00, so that no merchant wakes customers at night by mistake. Scheduling a send (or a retry) whose hour falls
-- inside them is refused, for any writer, naming the rule and the hours the shop can choose.

ALTER TABLE coupond.shops
    ADD COLUMN quiet_hours_start time,
    ADD COLUMN quiet_hours_end time,
    ADD CONSTRAINT shops_quiet_hours_whole CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL)),
    ADD CONSTRAINT shops_quiet_hours_not_empty CHECK (quiet_hours_start <> quiet_hours_end);

COMMENT ON COLUMN coupond.shops.quiet_hours_start IS
    'Start of the shop''s quiet hours in its time zone (included); with quiet_hours_end, sends in between are refused.';
COMMENT ON COLUMN coupond.shops.quiet_hours_end IS
    'End of the shop''s quiet hours (excluded): 09:00 lets a send go at 09:00. May be before the start (overnight).';

-- Whether the wall-clock time `local` is inside the quiet hours from `starts` (included) to `ends` (excluded),
-- which wrap past midnight when `ends` is earlier.
CREATE FUNCTION coupond.in_quiet_hours(local time, starts time, ends time) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN starts IS NULL THEN false
                WHEN starts < ends THEN local >= starts AND local < ends
                ELSE local >= starts OR local < ends END
$$;

CREATE FUNCTION coupond.check_quiet_hours() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    shop    coupond.shops%ROWTYPE;
    local   timestamp;
BEGIN
    SELECT * INTO shop FROM coupond.shops s WHERE s.id = NEW.shop_id;
    local := NEW.scheduled_at AT TIME ZONE shop.time_zone;
    IF coupond.in_quiet_hours(local::time, shop.quiet_hours_start, shop.quiet_hours_end) THEN
        PERFORM coupond.refuse('sends_outside_quiet_hours',
            format('%s (%s) is within the shop''s quiet hours, %s to %s', to_char(local, 'YYYY-MM-DD HH24:MI'),
                shop.time_zone, to_char(shop.quiet_hours_start, 'HH24:MI'), to_char(shop.quiet_hours_end, 'HH24:MI')),
            'Choose an hour outside them, shop time, or change the shop''s quiet hours.');
    END IF;
    RETURN NEW;
END;
$$;

-- After sends_check_new (triggers fire in name order), so that a send off the hour or too soon hears that first.
CREATE TRIGGER sends_quiet_hours_kept
    BEFORE INSERT ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.check_quiet_hours();

ALTER FUNCTION coupond.check_quiet_hours() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

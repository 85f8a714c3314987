-- Bounds on what other systems may write. 'infinity' or year 9999 passed every rule of a new send (an infinite hour is
-- "on the hour" and "2 hours ahead") and then broke the scheduler's query and the activity list; 'localtime',
-- 'Factory' and 'posixrules' are in pg_timezone_names but are not places a shop can be.

-- Runs before sends_check_new (triggers fire in name order), so that its arithmetic only sees finite times.
CREATE FUNCTION coupond.check_send_bounds() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.scheduled_at IS NOT NULL AND NOT isfinite(NEW.scheduled_at) THEN
        PERFORM coupond.refuse('sends_scheduled_finite', format('scheduled time %s is not a time', NEW.scheduled_at),
            'Set scheduled_at to an hour at least 2 hours from now and at most a year ahead.');
    END IF;
    IF NEW.scheduled_at > coupond.clock_now() + interval '1 year' THEN
        PERFORM coupond.refuse('sends_scheduled_within_a_year',
            format('scheduled time %s is more than a year ahead', to_char(NEW.scheduled_at, 'YYYY-MM-DD HH24:MI TZH')),
            format('Choose an hour before %s.',
                to_char(coupond.clock_now() + interval '1 year', 'YYYY-MM-DD HH24:MI TZH')));
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER sends_bounds_checked
    BEFORE INSERT ON coupond.sends
    FOR EACH ROW EXECUTE FUNCTION coupond.check_send_bounds();

CREATE OR REPLACE FUNCTION coupond.check_shop_time_zone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The server's own zone, the "no zone" placeholder and the tz database's rule templates are names, not places.
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.time_zone)
       OR NEW.time_zone IN ('localtime', 'Factory', 'posixrules')
       OR NEW.time_zone ~ '^(posix|right)/' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            CONSTRAINT = 'shops_time_zone_known',
            MESSAGE = format('unknown time zone %L for shop', NEW.time_zone),
            HINT = 'Use an IANA time zone name such as Asia/Kolkata or America/New_York.';
    END IF;
    RETURN NEW;
END;
$$;

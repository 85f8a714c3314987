-- Recipients written part by part as the send goes, instead of all of them before the first message. Writing a
-- million rows in one statement took 2.6 seconds during which nothing went out; now the start checks the rules and
-- counts the members, and the engine writes the next part of the list (in customer order) when it needs the next
-- batch, taking the rows it wrote as that batch. A customer removed from the group before the hour is never written.
--
-- recipients_after is the last customer id written for a sending send; NULL once every member is written, and for
-- sends that are not sending. A send cannot be done while it is set.

ALTER TABLE coupond.sends ADD COLUMN recipients_after bigint;

COMMENT ON COLUMN coupond.sends.recipients_after IS
    'While the recipients of a sending send are being written: the last customer id written. NULL once all are.';

-- A finished send has all of its recipients: the engine clears recipients_after with the last part.
ALTER TABLE coupond.sends ADD CONSTRAINT sends_recipients_written
    CHECK (recipients_after IS NULL OR status = 'sending');

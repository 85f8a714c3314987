-- The customer's language (issue #11): messages are rendered from the templates of the customer's locale
-- (`templates/<locale>/`), falling back to the shop's, then to the default. The locale is kept on the recipient row
-- as at send time, as the name and addresses are, so that a send taken over after a crash renders what it would have.

ALTER TABLE coupond.send_recipients ADD COLUMN locale text;

COMMENT ON COLUMN coupond.send_recipients.locale IS
    'The customer''s locale (customers.locale) when the recipient was written; it chose the messages'' templates.';

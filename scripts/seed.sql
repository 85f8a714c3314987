-- A demo shop (Asia/Kolkata) with one group of :customers customers and a "get coupon link" coupon, for
-- scripts/demo and scripts/systemd-check: psql -v customers=N -f scripts/seed.sql
-- Every 50th customer has no SMS consent, every 97th a malformed number and every 200th no email consent: they fail
-- per customer on that channel, so the merchant's failure report has something in it.
INSERT INTO coupond.shops (name, login_url, merchant_email, time_zone, currency, postal_address)
VALUES ('Demo Shop', 'https://demo-shop.example/account/login', 'owner@demo-shop.example', 'Asia/Kolkata', 'INR',
        '12 MG Road, Bengaluru 560001, India');
INSERT INTO coupond.customer_groups (shop_id, name) VALUES (1, 'Loyal customers');
INSERT INTO coupond.customers (shop_id, name, email, mobile, email_consent, sms_consent)
SELECT 1, 'Customer ' || n, 'customer' || n || '@mail.example',
       CASE WHEN n % 97 = 0 THEN '98-BAD-' || n ELSE '+9198' || lpad(n::text, 8, '0') END,
       n % 200 <> 0, n % 50 <> 0
FROM generate_series(1, :customers) AS n;
INSERT INTO coupond.group_members (group_id, customer_id) SELECT 1, id FROM coupond.customers;
INSERT INTO coupond.coupons (shop_id, title, description, kind, status, receive_limit, target)
VALUES (1, '15% off your next order', 'On orders over ₹999', 'get_coupon_link', 'published', :customers * 2, 'all_customers');

-- customer_credit: credit per customer (query `customer_credit`).
-- used_cents = authorized - refunded; available_cents = limit_cents - used_cents.

-- @tables
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    limit_cents INTEGER NOT NULL,
    used_cents  INTEGER NOT NULL DEFAULT 0
);

-- @on CustomerOpened
INSERT INTO customers (customer_id, name, limit_cents)
VALUES (:customer_id, :name, :credit_limit_cents);

-- @on PaymentAuthorized
UPDATE customers SET used_cents = used_cents + :amount_cents WHERE customer_id = :customer_id;

-- @on PaymentRefunded
UPDATE customers SET used_cents = used_cents - :amount_cents WHERE customer_id = :customer_id;

-- @query customer_credit
-- @param customer_id text optional
-- @order customer_id ASC
SELECT customer_id, name, limit_cents, used_cents, limit_cents - used_cents AS available_cents
FROM customers
WHERE (:customer_id IS NULL OR customer_id = :customer_id)

-- sales_by_day: confirmed orders and revenue per UTC day of OrderConfirmed (query
-- `sales_by_day`). It keeps each order's total from OrderPlaced to count it when confirmed.

-- @tables
CREATE TABLE order_totals (
    order_id    TEXT PRIMARY KEY,
    total_cents INTEGER NOT NULL
);
CREATE TABLE sales (
    day           TEXT PRIMARY KEY,  -- YYYY-MM-DD
    orders        INTEGER NOT NULL DEFAULT 0,
    revenue_cents INTEGER NOT NULL DEFAULT 0
);

-- @on OrderPlaced
INSERT INTO order_totals (order_id, total_cents) VALUES (:order_id, :total_cents);

-- @on OrderConfirmed
INSERT INTO sales (day, orders, revenue_cents)
SELECT substr(:occurred_at, 1, 10), 1, total_cents FROM order_totals WHERE order_id = :order_id
ON CONFLICT (day) DO UPDATE SET orders = orders + 1,
                                revenue_cents = revenue_cents + excluded.revenue_cents;
DELETE FROM order_totals WHERE order_id = :order_id;

-- @on OrderCancelled
DELETE FROM order_totals WHERE order_id = :order_id;

-- @query sales_by_day
-- @order day DESC
SELECT day, orders, revenue_cents FROM sales

-- orders: every order with its status and lines (queries `orders` and `order`).

-- @tables
CREATE TABLE orders (
    order_id      TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    status        TEXT NOT NULL,          -- placed | confirmed | cancelled
    total_cents   INTEGER NOT NULL,
    placed_at     TEXT NOT NULL,          -- RFC 3339 UTC, fixed width: sorts as time
    cancel_reason TEXT
);
CREATE INDEX orders_by_time ON orders (placed_at DESC, order_id);
CREATE INDEX orders_by_status ON orders (status, placed_at DESC, order_id);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at DESC, order_id);
CREATE TABLE order_lines (
    order_id         TEXT NOT NULL,
    line             INTEGER NOT NULL,
    sku              TEXT NOT NULL,
    quantity         INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line)
);

-- @on OrderPlaced
INSERT INTO orders (order_id, customer_id, status, total_cents, placed_at)
VALUES (:order_id, :customer_id, 'placed', :total_cents, :occurred_at);
INSERT INTO order_lines (order_id, line, sku, quantity, unit_price_cents)
SELECT :order_id, key, json_extract(value, '$.sku'), json_extract(value, '$.quantity'),
       json_extract(value, '$.unit_price_cents')
FROM json_each(:lines);

-- @on OrderConfirmed
UPDATE orders SET status = 'confirmed' WHERE order_id = :order_id;

-- @on OrderCancelled
UPDATE orders SET status = 'cancelled', cancel_reason = :reason WHERE order_id = :order_id;

-- @query orders
-- @param status text optional in(placed,confirmed,cancelled)
-- @param customer_id text optional
-- @order placed_at DESC, order_id ASC
SELECT order_id, customer_id, status, total_cents, placed_at, cancel_reason
FROM orders
WHERE (:status IS NULL OR status = :status)
  AND (:customer_id IS NULL OR customer_id = :customer_id)

-- @query order_counts
-- @order status ASC
-- How many orders are in each status (the dashboard's counts): one short scan of the
-- orders_by_status index, however many orders there are.
SELECT status, COUNT(*) AS orders
FROM orders
GROUP BY status

-- @query order
-- @param order_id text required
-- @order order_id ASC
-- @json lines
SELECT o.order_id, o.customer_id, o.status, o.total_cents, o.placed_at, o.cancel_reason,
       (SELECT json_group_array(json_object('sku', l.sku, 'quantity', l.quantity,
                                            'unit_price_cents', l.unit_price_cents))
        FROM (SELECT * FROM order_lines WHERE order_id = o.order_id ORDER BY line) AS l) AS lines
FROM orders AS o
WHERE o.order_id = :order_id

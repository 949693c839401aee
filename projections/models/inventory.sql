-- inventory: stock per product (query `inventory`).
-- on_hand = restocked - committed; reserved = open reservations; available = on_hand - reserved.

-- @tables
CREATE TABLE products (
    sku       TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    restocked INTEGER NOT NULL DEFAULT 0,
    committed INTEGER NOT NULL DEFAULT 0,
    reserved  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE reservations (
    sku      TEXT NOT NULL,
    order_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (sku, order_id)
);

-- @on ProductRegistered
INSERT INTO products (sku, name) VALUES (:sku, :name);

-- @on ProductRestocked
UPDATE products SET restocked = restocked + :quantity WHERE sku = :sku;

-- @on StockReserved
INSERT INTO reservations (sku, order_id, quantity) VALUES (:sku, :order_id, :quantity);
UPDATE products SET reserved = reserved + :quantity WHERE sku = :sku;

-- @on StockReleased
UPDATE products SET reserved = reserved - :quantity WHERE sku = :sku;
DELETE FROM reservations WHERE sku = :sku AND order_id = :order_id;

-- @on StockCommitted
UPDATE products SET reserved = reserved - :quantity, committed = committed + :quantity
WHERE sku = :sku;
DELETE FROM reservations WHERE sku = :sku AND order_id = :order_id;

-- @query inventory
-- @param sku text optional
-- @order sku ASC
SELECT sku, name, restocked - committed AS on_hand, reserved,
       restocked - committed - reserved AS available
FROM products
WHERE (:sku IS NULL OR sku = :sku)

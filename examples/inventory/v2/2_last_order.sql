ALTER TABLE stock_levels ADD COLUMN last_order_id text;

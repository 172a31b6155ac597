CREATE TABLE stock_levels (
    sku text PRIMARY KEY,
    on_hand bigint NOT NULL CHECK (on_hand >= 0),
    shipped bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);

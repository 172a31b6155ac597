CREATE TABLE received_totals (
    sku        text        PRIMARY KEY,
    units      bigint      NOT NULL CHECK (units > 0),
    receipts   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

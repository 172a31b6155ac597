#!/usr/bin/env bash
# Your own domain in ten minutes (README): run from the repository with the services up
# (scripts/services.sh up) and `eventline` on the PATH. tests/system/tutorial.rs runs this file.
set -euo pipefail
http="http://${EVENTLINE_HTTP_ADDR:-127.0.0.1:8080}"

# 1. Your event types (a registry) and your projection (SQL), in a folder of your own.
work="$(mktemp -d)"
cp -r examples/inventory/schemas examples/inventory/projections "$work/"
export EVENTLINE_SCHEMAS_DIR="$work/schemas" EVENTLINE_PROJECTIONS_DIR="$work/projections"

# 2. Check them, create the tables and the topic, start the gateway, query API and worker.
eventline schemas check --dir "$EVENTLINE_SCHEMAS_DIR"
eventline projections check
eventline migrate
eventline topics create
eventline up 2>"$work/up.log" &
up=$!
trap 'kill $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
until curl -sf "$http/readyz" >/dev/null; do sleep 0.2; done

# 3. A key for the warehouse, to publish its events and read its stock;
#    10 bolts in, 4 out, then 40 out: more than there is.
key=$(eventline keys create --name warehouse --types 'inventory.*' --scope read:stock)
event() { printf '{"specversion":"1.0","id":"%s","source":"/warehouse","type":"inventory.%s","subject":"bolt","data":%s}' "$1" "$2" "$3"; }
answer=$(curl -sf "$http/v1/events" -H "Authorization: Bearer $key" \
  -H 'content-type: application/cloudevents-batch+json' \
  -d "[$(event r1 StockReceived '{"sku":"bolt","quantity":10}'),
       $(event s1 ItemShipped '{"sku":"bolt","quantity":4,"order_id":"o-1"}'),
       $(event s2 ItemShipped '{"sku":"bolt","quantity":40,"order_id":"o-2"}')]")
token=$(echo "$answer" | sed -E 's/.*"consistency_token":"([^"]+)".*/\1/')

# 4. Read your own write: the answer waits until the projection has applied those events.
curl -sf "$http/v1/tables/stock_levels/bolt?consistency_token=$token" -H "Authorization: Bearer $key"; echo

# 5. Your rule refused the shipment of 40: a dead letter, bolt parked behind it.
eventline dlq list --projection stock

# 6. Version 2 remembers each SKU's last order: a new migration adds the column, the new
#    apply.sql fills it. Rebuild the projection from the topic beside the live one, then switch.
cp examples/inventory/v2/2_last_order.sql "$EVENTLINE_PROJECTIONS_DIR/stock/migrations/"
cp examples/inventory/v2/apply.sql "$EVENTLINE_PROJECTIONS_DIR/stock/"
sed -i 's/^version = 1$/version = 2/' "$EVENTLINE_PROJECTIONS_DIR/stock/projection.toml"
eventline projections check
eventline migrate
eventline rebuild start stock >/dev/null
eventline rebuild cutover stock
curl -sf "$http/v1/tables/stock_levels/bolt" -H "Authorization: Bearer $key"; echo

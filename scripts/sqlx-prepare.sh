#!/usr/bin/env bash
# Regenerates .sqlx/, the offline query data that lets the store crate's checked SQL compile
# without a database. Run it after changing a query or a migration; commit the result.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER="${EVENTLINE_PREPARE_SERVER:-postgres://postgres@127.0.0.1:5432}"
DB="eventline_sqlx_prepare"
psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
# Every migration (the runtime's and each projection's), in version order.
find "$ROOT/migrations" "$ROOT/reference/migrations" "$ROOT/reference/projections" -path '*migrations/*.sql' -printf '%f %p\n' | sort | while read -r _ migration; do
  psql "$SERVER/$DB" -q -v ON_ERROR_STOP=1 -f "$migration"
done
# The outbox lives in upstream databases; the queries against it are checked here too.
psql "$SERVER/$DB" -q -v ON_ERROR_STOP=1 -f "$ROOT/src/store/outbox/install.sql"
rm -rf "$ROOT/.sqlx" && mkdir -p "$ROOT/.sqlx"
cd "$ROOT"
touch src/store/lib.rs reference/src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$ROOT/.sqlx" DATABASE_URL="$SERVER/$DB" cargo check -q -p eventline-store -p eventline-reference
psql "$SERVER/postgres" -qc "DROP DATABASE $DB WITH (FORCE)"
echo "wrote $(ls "$ROOT/.sqlx" | wc -l) query files to .sqlx/"

#!/usr/bin/env bash
# Brings up (or down) the two services eventline needs on a development machine or in CI:
# PostgreSQL from the OS packages and Tansu, a Kafka-API broker, on 127.0.0.1:9092.
#
#   scripts/services.sh up       install what is missing, start what is stopped, wait until both answer
#   scripts/services.sh down     stop Tansu, and PostgreSQL too if this script started it
#   scripts/services.sh status   say what runs
#
# Safe to run twice. State and logs live under .eventline/ (override with EVENTLINE_STATE_DIR):
#   .eventline/logs/tansu.log    the broker's log
#   .eventline/tansu/tansu.db    the broker's data (SQLite: it survives broker restarts)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TANSU_DIR="$STATE_DIR/tansu"
TANSU_VERSION="0.6.0"
TANSU_HOST="127.0.0.1"
TANSU_PORT="9092"
PG_HOST="127.0.0.1"
PG_PORT="5432"
WAIT_SECS="${EVENTLINE_SERVICES_WAIT_SECS:-60}"

port_open() { (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1; }

wait_for_port() {
  local name=$1 host=$2 port=$3 waited=0
  until port_open "$host" "$port"; do
    if [ "$waited" -ge "$WAIT_SECS" ]; then die "$name did not answer on $host:$port within ${WAIT_SECS}s"; fi
    sleep 1; waited=$((waited + 1))
  done
}

pg_ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

postgres_up() {
  if pg_ready; then say "PostgreSQL answers on $PG_HOST:$PG_PORT"; return; fi
  local installed_now=0
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    apt_install postgresql
    installed_now=1
  fi
  local version cluster
  read -r version cluster _ < <(pg_lsclusters -h | head -n 1)
  say "starting PostgreSQL cluster $version/$cluster"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
  touch "$RUN_DIR/postgres.started"
  if [ "$installed_now" -eq 1 ]; then
    # A fresh Debian cluster asks for a password on 127.0.0.1; eventline's default URL has none.
    # Trust the postgres user on loopback only, for this development cluster we just installed.
    local hba="/etc/postgresql/$version/$cluster/pg_hba.conf"
    if ! as_root grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
      say "trusting the postgres user on 127.0.0.1 in $hba (development cluster installed by this script)"
      as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" reload
    fi
  fi
  local waited=0
  until pg_ready; do
    if [ "$waited" -ge "$WAIT_SECS" ]; then die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${WAIT_SECS}s (see /var/log/postgresql/)"; fi
    sleep 1; waited=$((waited + 1))
  done
  say "PostgreSQL answers on $PG_HOST:$PG_PORT"
}

tansu_bin() {
  if command -v tansu >/dev/null 2>&1; then command -v tansu
  elif [ -x "$HOME/.cargo/bin/tansu" ]; then echo "$HOME/.cargo/bin/tansu"
  fi
}

tansu_up() {
  mkdir -p "$TANSU_DIR"
  local bin
  bin="$(tansu_bin)"
  if [ -z "$bin" ] || [ "$("$bin" --version 2>/dev/null)" != "tansu $TANSU_VERSION" ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to install Tansu (install a Rust toolchain with rustup)"
    say "installing Tansu $TANSU_VERSION with cargo (about 10 minutes, once; log: $LOG_DIR/tansu-install.log)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql >"$LOG_DIR/tansu-install.log" 2>&1 \
      || die "installing Tansu failed; see $LOG_DIR/tansu-install.log"
    bin="$(tansu_bin)"
  fi
  if port_open "$TANSU_HOST" "$TANSU_PORT"; then
    say "a broker answers on $TANSU_HOST:$TANSU_PORT"
    if [ -f "$TANSU_DIR/tansu.db" ]; then tansu_index_headers; fi
    return
  fi
  say "starting Tansu on $TANSU_HOST:$TANSU_PORT (data: $TANSU_DIR, log: $LOG_DIR/tansu.log)"
  # Detached from this shell and its output, so callers (CI included) never wait on the broker.
  (
    cd "$TANSU_DIR"
    setsid "$bin" broker \
      --listener-url "tcp://$TANSU_HOST:$TANSU_PORT" \
      --advertised-listener-url "tcp://$TANSU_HOST:$TANSU_PORT" \
      --storage-engine "sqlite://tansu.db" \
      </dev/null >>"$LOG_DIR/tansu.log" 2>&1 &
    echo $! >"$RUN_DIR/tansu.pid"
  )
  wait_for_port Tansu "$TANSU_HOST" "$TANSU_PORT"
  tansu_index_headers
  say "Tansu answers on $TANSU_HOST:$TANSU_PORT"
}

# Workaround for Tansu 0.6.0's SQLite engine: its `header` table has no index, so fetching a
# record's headers scans every header ever stored, and consumers slow down as the broker's data
# grows (10,000 records with 4 headers each took 120 s to consume instead of 10 s). The index
# is additive and Tansu picks it up while running.
tansu_index_headers() {
  need_command sqlite3 sqlite3
  local db="$TANSU_DIR/tansu.db" waited=0
  until [ -f "$db" ] && sqlite3 "$db" "SELECT 1 FROM sqlite_master WHERE name = 'header'" 2>/dev/null | grep -q 1; do
    if [ "$waited" -ge "$WAIT_SECS" ]; then die "Tansu did not create its schema in $db within ${WAIT_SECS}s"; fi
    sleep 1; waited=$((waited + 1))
  done
  sqlite3 "$db" "PRAGMA busy_timeout = 10000; CREATE INDEX IF NOT EXISTS eventline_header_by_record ON header (topition, offset_id);" >/dev/null
}

tansu_down() {
  local pidfile="$RUN_DIR/tansu.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    local pid waited=0
    pid="$(cat "$pidfile")"
    say "stopping Tansu (pid $pid)"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 20 ]; do sleep 0.5; waited=$((waited + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  else
    say "Tansu was not started by this script"
  fi
  rm -f "$pidfile"
}

postgres_down() {
  if [ -f "$RUN_DIR/postgres.started" ]; then
    local version cluster
    read -r version cluster _ < <(pg_lsclusters -h | head -n 1)
    say "stopping PostgreSQL cluster $version/$cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop || true
    rm -f "$RUN_DIR/postgres.started"
  else
    say "PostgreSQL was already running before this script; leaving it running"
  fi
}

status() {
  if pg_ready; then say "PostgreSQL: up on $PG_HOST:$PG_PORT"; else say "PostgreSQL: down"; fi
  if port_open "$TANSU_HOST" "$TANSU_PORT"; then say "broker: up on $TANSU_HOST:$TANSU_PORT"; else say "broker: down"; fi
}

case "${1:-}" in
  up) postgres_up; tansu_up ;;
  down) tansu_down; postgres_down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

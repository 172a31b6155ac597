#!/usr/bin/env bash
# Brings up (or down) the two services eventline needs on a development machine or in CI:
# PostgreSQL from the OS packages on 127.0.0.1:5432 and Apache Kafka (one KRaft node, from Maven
# Central jars, run with java) on 127.0.0.1:9092.
#
#   scripts/services.sh up       install what is missing, start what is stopped, wait until both answer
#   scripts/services.sh down     stop what this script started
#   scripts/services.sh status   say what runs
#
# Safe to run twice. PostgreSQL may be absent (installed now), installed and stopped (started),
# or running (used as it is). eventline's default URL connects as `postgres` without a password,
# so the local cluster's pg_hba.conf gets one line trusting the postgres user on 127.0.0.1 when
# that connection is refused: a development machine's setting, never a server's.
#
# State and logs live under .eventline/ (override with EVENTLINE_STATE_DIR):
#   .eventline/logs/kafka.log    the broker's log
#   .eventline/kafka/            the broker's jars (lib/), data (data/) and cluster id
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_SCRIPT="$ROOT/scripts/kafka/broker.sh"
KAFKA_HOST="127.0.0.1"
KAFKA_PORT="9092"
KAFKA_CONTROLLER_PORT="9093"
PG_HOST="127.0.0.1"
PG_PORT="5432"
WAIT_SECS="${EVENTLINE_SERVICES_WAIT_SECS:-60}"

port_open() { (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1; }

pg_ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

# The Debian cluster (version and name) that listens on PG_PORT, if any.
pg_cluster() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }'
}

# What eventline's default DATABASE_URL does: connect over TCP as postgres, without a password.
pg_connect_error() {
  PGPASSWORD= PGCONNECT_TIMEOUT=5 psql -w -X -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'SELECT 1' 2>&1 >/dev/null
}

wait_for_postgres() {
  local waited=0
  until pg_ready; do
    if [ "$waited" -ge "$WAIT_SECS" ]; then die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${WAIT_SECS}s (see /var/log/postgresql/)"; fi
    sleep 1; waited=$((waited + 1))
  done
}

# The runtime benchmark counts each batch's statements with pg_stat_statements, which PostgreSQL
# loads only when it starts: a Debian cluster this script starts gets it through its conf.d,
# unless the cluster's own configuration already chooses its preloaded libraries.
pg_load_statement_counts() {
  local version="$1" cluster="$2"
  local conf="/etc/postgresql/$version/$cluster"
  as_root test -d "$conf/conf.d" || return 0
  as_root test -f "/usr/lib/postgresql/$version/lib/pg_stat_statements.so" || return 0
  if as_root grep -qE '^[[:space:]]*shared_preload_libraries' "$conf/postgresql.conf"; then return 0; fi
  as_root test -f "$conf/conf.d/eventline.conf" && return 0
  say "loading pg_stat_statements in $version/$cluster ($conf/conf.d/eventline.conf)"
  printf '%s\n' "# added by eventline's scripts/services.sh: statement counts for its benchmarks" \
    "shared_preload_libraries = 'pg_stat_statements'" | as_root tee "$conf/conf.d/eventline.conf" >/dev/null
}

postgres_up() {
  if ! pg_ready; then
    if [ -z "$(pg_cluster)" ]; then
      if command -v pg_lsclusters >/dev/null 2>&1 && [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
        die "no PostgreSQL cluster listens on port $PG_PORT (pg_lsclusters lists others); eventline's default DATABASE_URL needs $PG_HOST:$PG_PORT"
      fi
      apt_install postgresql
    fi
    local version cluster
    read -r version cluster < <(pg_cluster)
    [ -n "${cluster:-}" ] || die "installing postgresql created no cluster on port $PG_PORT (pg_lsclusters shows what there is)"
    pg_load_statement_counts "$version" "$cluster"
    say "starting PostgreSQL cluster $version/$cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
    touch "$RUN_DIR/postgres.started"
    wait_for_postgres
  fi
  local error
  if ! error="$(pg_connect_error)"; then
    local version cluster
    read -r version cluster < <(pg_cluster)
    local hba="/etc/postgresql/${version:-?}/${cluster:-?}/pg_hba.conf"
    if [ -z "${cluster:-}" ] || ! as_root test -f "$hba"; then
      die "PostgreSQL on $PG_HOST:$PG_PORT refuses postgres without a password ($error), and it is not a local Debian cluster this script can configure: set DATABASE_URL, or allow that connection"
    fi
    # Debian's default asks for a password on 127.0.0.1; eventline's default URL has none.
    say "trusting the postgres user on $PG_HOST in $hba (a development cluster: eventline's default URL has no password)"
    as_root sed -i "1i host all postgres $PG_HOST/32 trust # added by eventline's scripts/services.sh" "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" reload
    local waited=0
    until error="$(pg_connect_error)"; do
      if [ "$waited" -ge 10 ]; then die "PostgreSQL still refuses postgres on $PG_HOST:$PG_PORT after trusting it in $hba: $error"; fi
      sleep 1; waited=$((waited + 1))
    done
  fi
  say "PostgreSQL answers on $PG_HOST:$PG_PORT"
}

kafka_pid() {
  local pidfile="$RUN_DIR/kafka.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then cat "$pidfile"; fi
}

kafka_up() {
  "$KAFKA_SCRIPT" install
  local pid
  pid="$(kafka_pid)"
  if [ -z "$pid" ] && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    say "a broker answers on $KAFKA_HOST:$KAFKA_PORT (not started by this script; using it)"
    return
  fi
  if [ -z "$pid" ]; then
    say "starting Apache Kafka on $KAFKA_HOST:$KAFKA_PORT (data: $STATE_DIR/kafka/data, log: $LOG_DIR/kafka.log)"
    # Detached from this shell and its output, so callers (CI included) never wait on the broker.
    setsid "$KAFKA_SCRIPT" run "$STATE_DIR/kafka" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" \
      </dev/null >>"$LOG_DIR/kafka.log" 2>&1 &
    pid=$!
    echo "$pid" >"$RUN_DIR/kafka.pid"
  fi
  local waited=0
  until port_open "$KAFKA_HOST" "$KAFKA_PORT"; do
    kill -0 "$pid" 2>/dev/null || die "Apache Kafka exited while starting; the end of $LOG_DIR/kafka.log:
$(tail -n 20 "$LOG_DIR/kafka.log")"
    if [ "$waited" -ge $((WAIT_SECS * 5)) ]; then die "Apache Kafka did not answer on $KAFKA_HOST:$KAFKA_PORT within ${WAIT_SECS}s (see $LOG_DIR/kafka.log)"; fi
    sleep 0.2; waited=$((waited + 1))
  done
  say "Apache Kafka answers on $KAFKA_HOST:$KAFKA_PORT"
}

kafka_down() {
  local pid
  pid="$(kafka_pid)"
  if [ -n "$pid" ]; then
    local waited=0
    say "stopping Apache Kafka (pid $pid)"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do sleep 0.5; waited=$((waited + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  else
    say "Apache Kafka was not started by this script"
  fi
  rm -f "$RUN_DIR/kafka.pid"
}

postgres_down() {
  if [ -f "$RUN_DIR/postgres.started" ]; then
    local version cluster
    read -r version cluster < <(pg_cluster)
    say "stopping PostgreSQL cluster $version/$cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop || true
    rm -f "$RUN_DIR/postgres.started"
  else
    say "PostgreSQL was already running before this script; leaving it running"
  fi
}

status() {
  if pg_ready; then say "PostgreSQL: up on $PG_HOST:$PG_PORT"; else say "PostgreSQL: down"; fi
  local pid
  pid="$(kafka_pid)"
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    if [ -n "$pid" ]; then say "broker: Apache Kafka up on $KAFKA_HOST:$KAFKA_PORT (pid $pid)"
    else say "broker: up on $KAFKA_HOST:$KAFKA_PORT (not started by this script)"; fi
  elif [ -n "$pid" ]; then say "broker: Apache Kafka starting (pid $pid)"
  else say "broker: down"; fi
}

case "${1:-}" in
  up) postgres_up; kafka_up ;;
  down) kafka_down; postgres_down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

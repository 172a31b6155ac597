#!/usr/bin/env bash
# Runs the whole system on this machine and feeds it demo traffic:
# PostgreSQL and Apache Kafka (installed and started when missing), eventline built, the database
# migrated, the topics created, `eventline up` running in the background, then 3,000 events of
# the three reference domains published while the projections fill in. Safe to run twice.
#
#   scripts/demo.sh          start (or restart) and feed traffic
#   scripts/demo.sh stop     stop eventline (scripts/services.sh down stops Kafka, and PostgreSQL if it started it)
#
# Logs: .eventline/logs/eventline.log (eventline), .eventline/logs/kafka.log (the broker).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/eventline}"
BIN="$ROOT/target/debug/eventline"
PIDFILE="$RUN_DIR/eventline.pid"
QUERY="SELECT account_id, owner, balance_minor, status, events_applied FROM account_balances ORDER BY updated_at DESC, account_id LIMIT 10"

stop_eventline() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    local pid waited=0
    pid="$(cat "$PIDFILE")"
    say "stopping eventline up (pid $pid)"
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do sleep 0.5; waited=$((waited + 1)); done
  fi
  rm -f "$PIDFILE"
}

if [ "${1:-}" = "stop" ]; then stop_eventline; exit 0; fi
[ $# -eq 0 ] || { echo "usage: $0 [stop]" >&2; exit 2; }

"$ROOT/scripts/services.sh" up
ensure_build_tools
say "building eventline (the first build takes a few minutes)"
(cd "$ROOT" && cargo build --locked --bin eventline)

"$BIN" migrate
"$BIN" topics create

stop_eventline
say "starting eventline up, gateway on ${EVENTLINE_HTTP_ADDR:-127.0.0.1:8080} without authentication (demo only; log: $LOG_DIR/eventline.log)"
setsid "$BIN" up --insecure-no-auth </dev/null >>"$LOG_DIR/eventline.log" 2>&1 &
echo $! >"$PIDFILE"

say "publishing 3,000 demo events (accounts, projects, activity) at 300 per second"
"$BIN" loadgen --domain all --keys 20 --events 3000 --rate 300 &
loadgen=$!
while kill -0 "$loadgen" 2>/dev/null; do
  sleep 3
  psql "$DATABASE_URL" -qAt -c "SELECT count(*) || ' accounts, ' || coalesce(sum(events_applied), 0) || ' events applied' FROM account_balances" >&2 || true
done
wait "$loadgen"
sleep 1
psql "$DATABASE_URL" -c "$QUERY"

cat >&2 <<TEXT

eventline is running in the background (pid $(cat "$PIDFILE")). Look at:
  the balances:   psql "$DATABASE_URL" -c "$QUERY"
  the positions:  psql "$DATABASE_URL" -c "SELECT * FROM eventline_checkpoints ORDER BY topic, partition"
  its log:        tail -f $LOG_DIR/eventline.log
  the projects:   psql "$DATABASE_URL" -c "SELECT * FROM project_progress ORDER BY project_id LIMIT 10"
  the activity:   psql "$DATABASE_URL" -c "SELECT * FROM daily_activity ORDER BY day"
  the gateway:    curl -s -X POST http://${EVENTLINE_HTTP_ADDR:-127.0.0.1:8080}/v1/events -H 'content-type: application/cloudevents+json' \\
                    -d '{"specversion":"1.0","id":"demo-1","source":"/you","type":"accounts.AccountOpened","subject":"you","data":{"account_id":"you","owner":"You","currency":"EUR"}}'
  the query API:  curl -s "http://${EVENTLINE_HTTP_ADDR:-127.0.0.1:8080}/v1/accounts/you?consistency_token=<token from the answer above>"
                  curl -s http://${EVENTLINE_HTTP_ADDR:-127.0.0.1:8080}/v1/projections   (positions, lag, dead letters)
                  curl -s http://${EVENTLINE_HTTP_ADDR:-127.0.0.1:8080}/openapi.json
  the console:    http://${EVENTLINE_HTTP_ADDR:-127.0.0.1:8080}/console   (in a browser: lag, dead letters, replays, rebuilds)
  the topic:      $BIN tail accounts.events --from start --limit 5
  more traffic:   $BIN loadgen --domain all --events 5000 --rate 500
  your events:    $BIN publish events.ndjson   (one CloudEvent per line; see README.md)
Stop it with scripts/demo.sh stop, and the services with scripts/services.sh down.
TEXT

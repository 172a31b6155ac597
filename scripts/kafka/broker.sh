#!/usr/bin/env bash
# Apache Kafka for development and tests: jars from Maven Central, run with java as one KRaft node
# (broker and controller in one process, no ZooKeeper).
#
#   scripts/kafka/broker.sh install
#       Java and Maven from the OS packages when missing, then the broker's jars (pom.xml here)
#       copied into .eventline/kafka/lib, once per version of pom.xml.
#   scripts/kafka/broker.sh run DIR PORT CONTROLLER_PORT
#       Runs a broker on 127.0.0.1:PORT (its controller on CONTROLLER_PORT) with its data under
#       DIR, in the foreground, logging to standard output. DIR is formatted on first use and its
#       cluster id kept in DIR/cluster-id; later runs reuse the data. The process becomes java
#       (exec), so its pid is the broker's: SIGTERM stops it cleanly, SIGKILL kills it.
#
# scripts/services.sh runs the shared broker this way (DIR .eventline/kafka, port 9092); system
# tests that stop a broker run private ones on their own ports and folders. KAFKA_HEAP_OPTS
# overrides the heap (default -Xms256m -Xmx1g). KAFKA_EXTRA_PROPERTIES names a file of broker
# properties appended last (so its lines win: more listeners, TLS, SASL), and KAFKA_FORMAT_ARGS
# adds options to the storage format of a new DIR (e.g. --add-scram 'SCRAM-SHA-512=[name=…]').
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

HERE="$ROOT/scripts/kafka"
KAFKA_LIB="$STATE_DIR/kafka/lib"
JAVA_MIN_MAJOR=17

java_major() { "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1; }

# The java to run: the one on PATH if it is recent enough, else one under /usr/lib/jvm, else
# Debian's default JRE installed now.
find_java() {
  local candidate
  for candidate in "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    if [ -x "$candidate" ] && [ "$(java_major "$candidate")" -ge "$JAVA_MIN_MAJOR" ] 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  return 1
}

ensure_java() {
  JAVA="$(find_java)" && return
  apt_install default-jre-headless
  JAVA="$(find_java)" || die "Apache Kafka needs Java $JAVA_MIN_MAJOR or newer; none was found after installing default-jre-headless"
}

install() {
  ensure_java
  need_command mvn maven
  mkdir -p "$STATE_DIR/kafka"
  local stamp
  stamp="$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)"
  # One copy at a time: parallel callers (tests starting private brokers) wait for the first.
  exec 9>"$STATE_DIR/kafka/.install.lock"
  flock 9
  if [ "$(cat "$KAFKA_LIB/.pom-sha256" 2>/dev/null)" != "$stamp" ]; then
    say "copying Apache Kafka's jars from Maven Central into $KAFKA_LIB (once; log: $LOG_DIR/kafka-install.log)"
    rm -rf "$KAFKA_LIB.new"
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$JAVA")")")" \
      mvn -B -f "$HERE/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB.new" >"$LOG_DIR/kafka-install.log" 2>&1 \
      || die "fetching Apache Kafka's jars failed; see $LOG_DIR/kafka-install.log"
    echo "$stamp" >"$KAFKA_LIB.new/.pom-sha256"
    rm -rf "$KAFKA_LIB"
    mv "$KAFKA_LIB.new" "$KAFKA_LIB"
  fi
  flock -u 9
  exec 9>&-
}

run() {
  local dir=$1 port=$2 controller_port=$3
  install
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local config="$dir/server.properties"
  {
    cat "$HERE/server.properties"
    printf '\n# This broker (written by scripts/kafka/broker.sh)\n'
    printf 'listeners=PLAINTEXT://127.0.0.1:%s,CONTROLLER://127.0.0.1:%s\n' "$port" "$controller_port"
    printf 'advertised.listeners=PLAINTEXT://127.0.0.1:%s\n' "$port"
    printf 'controller.quorum.bootstrap.servers=127.0.0.1:%s\n' "$controller_port"
    printf 'log.dirs=%s/data\n' "$dir"
    if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then
      printf '\n# Added from %s\n' "$KAFKA_EXTRA_PROPERTIES"
      cat "$KAFKA_EXTRA_PROPERTIES"
    fi
  } >"$config"
  if [ ! -f "$dir/data/meta.properties" ]; then
    if [ ! -s "$dir/cluster-id" ]; then
      "$JAVA" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool random-uuid >"$dir/cluster-id"
    fi
    # Split on blanks, never globbed: a SCRAM credential's brackets stay as they are.
    local format_args=()
    read -r -a format_args <<<"${KAFKA_FORMAT_ARGS:-}"
    "$JAVA" -cp "$KAFKA_LIB/*" -Dlog4j2.configurationFile="$HERE/log4j2.yaml" kafka.tools.StorageTool format \
      --standalone --cluster-id "$(cat "$dir/cluster-id")" --config "$config" "${format_args[@]}"
  fi
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM options
  exec "$JAVA" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -cp "$KAFKA_LIB/*" kafka.Kafka "$config"
}

case "${1:-}" in
  install) [ $# -eq 1 ] || { echo "usage: $0 install" >&2; exit 2; }; install ;;
  run) [ $# -eq 4 ] || { echo "usage: $0 run DIR PORT CONTROLLER_PORT" >&2; exit 2; }; run "$2" "$3" "$4" ;;
  *) echo "usage: $0 install | run DIR PORT CONTROLLER_PORT" >&2; exit 2 ;;
esac

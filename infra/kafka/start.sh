#!/usr/bin/env bash
# Start Baton's single-node KRaft Kafka in the background (idempotent).
#
#   KAFKA_BOOTSTRAP_SERVERS  set → use that cluster, start nothing
#   KAFKA_PORT               broker port            (default 19092)
#   KAFKA_CONTROLLER_PORT    KRaft controller port  (default 19093)
#   BATON_HOME               data root              (default <repo>/.baton); Kafka uses $BATON_HOME/kafka
#   BATON_CACHE              jar cache, outside the repo (default ~/.cache/baton)
set -euo pipefail

if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    echo "kafka: KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS} is set; using the existing cluster"
    exit 0
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
KAFKA_VERSION=3.9.1
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
CACHE="${BATON_CACHE:-$HOME/.cache/baton}/kafka-$KAFKA_VERSION"
DATA="${BATON_HOME:-$REPO/.baton}/kafka"
PID_FILE="$DATA/kafka.pid"

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "kafka: '$tool' is not installed; the embedded Kafka needs Java 17+ and Maven." >&2
        echo "kafka: install them, or set KAFKA_BOOTSTRAP_SERVERS to an existing cluster." >&2
        exit 1
    fi
done

is_running() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= | grep -q 'kafka\.Kafka'
}

if is_running; then
    echo "kafka: already running (pid $(cat "$PID_FILE")) on 127.0.0.1:$KAFKA_PORT"
    exit 0
fi

# 1. The broker's jars, fetched once into a cache outside the repo.
if [[ ! -f "$CACHE/.complete" ]]; then
    echo "kafka: fetching Kafka $KAFKA_VERSION jars into $CACHE/libs"
    rm -rf "$CACHE/libs"
    mkdir -p "$CACHE"
    if ! mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$CACHE/libs" >"$CACHE/mvn.log" 2>&1; then
        echo "kafka: maven could not fetch the jars:" >&2
        cat "$CACHE/mvn.log" >&2
        exit 1
    fi
    touch "$CACHE/.complete"
fi

# 2. Configuration, rendered from the template on every start.
mkdir -p "$DATA/data" "$DATA/log"
sed -e "s|\${KAFKA_PORT}|$KAFKA_PORT|g" \
    -e "s|\${KAFKA_CONTROLLER_PORT}|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|\${KAFKA_DATA_DIR}|$DATA|g" \
    "$HERE/server.properties.template" >"$DATA/server.properties"

JAVA_LOG=(-Dlog4j.configuration="file:$HERE/log4j.properties" -Dkafka.logs.dir="$DATA/log")
CP="$CACHE/libs/*"

# 3. Storage, formatted once with a cluster id kept in the data dir.
if [[ ! -f "$DATA/data/meta.properties" ]]; then
    if [[ ! -s "$DATA/cluster-id" ]]; then
        java "${JAVA_LOG[@]}" -cp "$CP" kafka.tools.StorageTool random-uuid >"$DATA/cluster-id"
    fi
    java "${JAVA_LOG[@]}" -cp "$CP" kafka.tools.StorageTool format \
        -t "$(tr -d '[:space:]' <"$DATA/cluster-id")" -c "$DATA/server.properties" >/dev/null
fi

# 4. The broker, in the background.
nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true "${JAVA_LOG[@]}" \
    -cp "$CP" kafka.Kafka "$DATA/server.properties" \
    >"$DATA/kafka.out" 2>&1 </dev/null &
echo $! >"$PID_FILE"
echo "kafka: started (pid $!) on 127.0.0.1:$KAFKA_PORT, data in $DATA"

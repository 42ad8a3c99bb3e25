#!/usr/bin/env bash
# Stop Baton's embedded Kafka: SIGTERM, wait up to 30 s for a clean shutdown, then SIGKILL.
set -euo pipefail

if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
    echo "kafka: KAFKA_BOOTSTRAP_SERVERS is set; not stopping an external cluster"
    exit 0
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA="${BATON_HOME:-$REPO/.baton}/kafka"
PID_FILE="$DATA/kafka.pid"
GRACE_SECONDS="${KAFKA_STOP_TIMEOUT:-30}"

if [[ ! -f "$PID_FILE" ]]; then
    echo "kafka: not running (no pid file)"
    exit 0
fi
pid="$(cat "$PID_FILE")"
if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null || ! ps -p "$pid" -o args= | grep -q 'kafka\.Kafka'; then
    echo "kafka: not running (stale pid file)"
    rm -f "$PID_FILE"
    exit 0
fi

kill -TERM "$pid"
deadline=$((SECONDS + GRACE_SECONDS))
while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
        echo "kafka: still alive after ${GRACE_SECONDS}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
    fi
    sleep 0.2
done
rm -f "$PID_FILE"
echo "kafka: stopped (pid $pid)"

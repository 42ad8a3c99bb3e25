#!/usr/bin/env bash
# Wait until the Kafka broker answers a metadata request (deadline KAFKA_WAIT_TIMEOUT, 90 s).
# On timeout, print the tail of the embedded broker's logs and exit 1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TIMEOUT="${KAFKA_WAIT_TIMEOUT:-90}"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-19092}}"
DATA="${BATON_HOME:-$REPO/.baton}/kafka"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi

cd "$REPO"
if "$PYTHON" -m services.adapters.infra wait-kafka --bootstrap "$BOOTSTRAP" --timeout "$TIMEOUT"; then
    echo "kafka: ready at $BOOTSTRAP"
    exit 0
fi

echo "kafka: not ready at $BOOTSTRAP after ${TIMEOUT}s" >&2
for f in "$DATA/kafka.out" "$DATA/log/server.log"; do
    if [[ -f "$f" ]]; then
        echo "---- tail of $f ----" >&2
        tail -n 40 "$f" >&2
    fi
done
exit 1

#!/usr/bin/env bash
# Stop Baton's embedded PostgreSQL (services/adapters/embedded_pg.py). No-op with DATABASE_URL set.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$REPO"
exec "$PYTHON" -m services.adapters.embedded_pg stop

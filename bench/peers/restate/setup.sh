#!/usr/bin/env bash
# The Restate server ships as an npm package with its prebuilt binary inside (no docker needed).
# It goes into the venv, which run.py finds as sys.prefix whatever --workdir it is given.
set -euo pipefail
mkdir -p "$VENV/restate-server"
npm install --prefix "$VENV/restate-server" --no-audit --no-fund --no-save \
    @restatedev/restate-server@1.7.12

#!/usr/bin/env bash
# Installs the hub into .venv and runs `hub demo`: the whole flow in one process on kombu's
# in-memory transport, an SQLite ledger and a pretend NHS trust. Needs no services.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/hub demo "$@"

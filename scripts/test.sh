#!/usr/bin/env bash
# Installs the hub with its test dependencies into .venv, then runs lint, types and every test
# (unit, integration and end-to-end against the real RabbitMQ and PostgreSQL).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m unit` for the fast subset.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check hub tests bench
.venv/bin/ruff format --check hub tests bench
.venv/bin/mypy hub
command -v chromium || (apt-get update -qq && apt-get install -y -qq chromium)
# The queue-metric tests read RabbitMQ's management API; enabling it is idempotent.
command -v rabbitmq-plugins >/dev/null && rabbitmq-plugins enable rabbitmq_management >/dev/null
.venv/bin/python -m pytest "$@"

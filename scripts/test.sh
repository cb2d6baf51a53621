#!/usr/bin/env bash
# `make test`: set up what the suite needs (system packages, a local Kafka broker), run it, clean up.
# Extra arguments go to pytest (e.g. `make test ARGS="-k pulse"`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh
started_kafka=0
if ! bash scripts/kafka.sh status >/dev/null 2>&1; then
  bash scripts/kafka.sh up
  started_kafka=1
fi
cleanup() { [ "$started_kafka" -eq 1 ] && bash scripts/kafka.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT

.venv/bin/python -m pytest -q "$@"

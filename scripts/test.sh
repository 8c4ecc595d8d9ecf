#!/usr/bin/env bash
# The project's test command: set up (idempotent), then run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"

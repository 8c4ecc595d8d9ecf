#!/usr/bin/env bash
# The project's test command: set up (idempotent), then run every test suite.
#   - android-demo/core: the platform-free Kotlin core, compiled and tested on the JVM (installs its own tools)
#   - ruff: lint and format check of every Python file; mypy: edgeopt and edgeopt_runtime, both strict
#   - pytest: edgeopt (host), edgeopt-runtime, android golden parity, and the real default build end to end
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` skips the end-to-end default build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
bash android-demo/core/run-tests.sh
.venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Create .venv and install edgeopt, edgeopt-runtime and the test tools, at the versions checked to work together.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch first and pinned: a bare or ranged torch requirement would pull a multi-GB CUDA build.
"${pip[@]}" install torch==2.13.0
# constraints.txt holds the versions checked together; the package metadata only asks for their release series.
"${pip[@]}" install -c constraints.txt -e "./runtime[onnx,tflite,serve]" -e ".[teacher,dev]"
# The servers the tests start on loopback (issue 13): Debian's redis-server, memcached, prometheus (promtool) and the
# wrk load generator of bench/bench_serve.py. Installed when missing and we are root (CI is); else say what to run.
missing=()
for tool in redis-server memcached prometheus promtool wrk; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || [ -x "/usr/bin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server memcached prometheus wrk >/dev/null
  else
    echo "warning: ${missing[*]} not installed; the server tests need them: sudo apt-get install redis-server memcached prometheus wrk" >&2
  fi
fi
echo "edgeopt is installed in .venv: run .venv/bin/edgeopt --help"

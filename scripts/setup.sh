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
"${pip[@]}" install -c constraints.txt -e "./runtime[onnx,tflite]" -e ".[teacher,dev]"
echo "edgeopt is installed in .venv: run .venv/bin/edgeopt --help"

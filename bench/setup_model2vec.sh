#!/usr/bin/env bash
# A venv for the model2vec baseline of bench/bench_embed.py (not part of the test command): model2vec[distill]
# 0.10 pins transformers < 5.4, which edgeopt's own venv cannot hold (its distill needs the quantization extra:
# scikit-learn). torch first and pinned, as scripts/setup.sh
# does, so that pip takes the CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/model2vec-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install "model2vec[distill,quantization]==0.10.*"
echo "model2vec baseline venv: $VENV"

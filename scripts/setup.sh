#!/usr/bin/env bash
# Create .venv and install maskdet's dependencies; does nothing when they are already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=.venv/.installed
want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "Setting up .venv (first run: a few minutes)..." >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
# facenet-pytorch declares torch<2.3 and numpy<2; installed without its dependency pins (see requirements-nodeps.txt).
.venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
echo "$want" > "$stamp"

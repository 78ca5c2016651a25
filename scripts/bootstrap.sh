#!/usr/bin/env bash
# Create .venv and install the project's Python dependencies (idempotent).
# Usage: scripts/bootstrap.sh [requirements file]   (default: requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements-dev.txt}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat "$requirements" requirements*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  touch "$stamp"
fi

#!/usr/bin/env bash
# Quickstart 2: install everything the tests need (Python packages, Azurite from npm), run them.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-dev.txt
if [ -f package-lock.json ] && [ ! -x node_modules/.bin/azurite ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# The console's browser tests drive Debian's Chromium with its chromedriver (tests/test_console.py).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
  else
    echo "note: the console's browser tests need Chromium: sudo apt-get install chromium chromium-driver" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Quickstart 1: install, then run the bridge locally on the embedded defaults:
# SQLite store, the Calendly sandbox and a console target, with an event flowing through.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-local.txt
exec .venv/bin/python -m shared serve --sandbox "$@"

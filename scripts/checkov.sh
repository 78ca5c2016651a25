#!/usr/bin/env bash
# Scan infra/ with checkov (Bicep framework) from its own venv (.venv-checkov), offline.
# Prints checkov's JSON report on stdout; exit code is checkov's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-checkov/bin/checkov ]; then
  python3 -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check "checkov>=3.2,<4" >&2
fi
export BC_SKIP_MAPPING=TRUE CKV_NO_GUIDE=true
exec .venv-checkov/bin/checkov --config-file infra/.checkov.yaml -d infra --output json --quiet "$@"

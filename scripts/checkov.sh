#!/usr/bin/env bash
# Scan infra/ with checkov (Bicep framework, skips documented in infra/.checkov.yaml), offline.
# checkov lives in its own venv (.venv-checkov, created on first use: ~30 s) because its
# dependency tree would fight the project's pins. Prints checkov's JSON report on stdout;
# the exit code is checkov's. Extra arguments go to checkov (e.g. --skip-check NONE).
set -euo pipefail
cd "$(dirname "$0")/.."
version="3.3.30"
if [ "$(.venv-checkov/bin/checkov --version 2>/dev/null || true)" != "$version" ]; then
  "${PYTHON:-python3}" -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check "checkov==$version" >&2
fi
export BC_SKIP_MAPPING=TRUE CKV_NO_GUIDE=true
exec .venv-checkov/bin/checkov --config-file infra/.checkov.yaml -d infra --output json --quiet "$@"

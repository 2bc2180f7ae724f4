#!/usr/bin/env bash
# Installs everything qis-data needs on a fresh machine: the Python environment (.venv), the
# FerretDB test server (built once, cached outside the clone), and buf for proto linting.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "python environment ready: .venv"
./scripts/setup_ferretdb.sh
if [ -f package.json ]; then
  npm ci --silent --no-audit --no-fund
  echo "buf ready: node_modules/.bin/buf"
fi

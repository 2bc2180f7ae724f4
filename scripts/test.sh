#!/usr/bin/env bash
# The project's checks, in the order that fails fastest: style, types, contracts, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k subscribe).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
./scripts/check_generated.sh
if [ -x scripts/lint_protos.sh ]; then ./scripts/lint_protos.sh; fi
pytest -q -p no:cacheprovider "$@"

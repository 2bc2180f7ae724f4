#!/usr/bin/env bash
# The project's checks, in the order that fails fastest: style, types, contracts, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k subscribe), after the defaults, so they
# override them; scripts/test.sh -n 0 runs the tests serially, in one process. By default they
# run on two pytest-xdist workers (-n 2), each test module whole on one worker, in order
# (--dist loadfile): a module's own fixtures (a seeded cluster, a setup script run in the source
# folder: clients/{ts,go,python}) start once, and checks at its end see what its tests did in
# that process (the fuzz suite's). Not --dist loadgroup with xdist_group marks: with pytest 9.2
# it silently ignores the marks (pytest-xdist#1386).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
./scripts/check_generated.sh
if [ -x scripts/lint_protos.sh ]; then ./scripts/lint_protos.sh; fi
pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"

#!/usr/bin/env bash
# Installs qis-data into .venv from the lock files, so every machine gets the same versions.
#
#   scripts/setup.sh          what `qis up` needs (requirements/runtime.lock): Python >= 3.11 only,
#                             no Go, no npm
#   scripts/setup.sh --dev    the developer set of packages (requirements/dev.lock: tests, linters,
#                             the pinned code generator); scripts/setup-dev.sh does this and also
#                             builds the FerretDB test server and installs buf
#
# How: pip installs uv (its version and hashes pinned in requirements/bootstrap.lock) into
# .venv, then uv installs the lock with its hashes (--require-hashes) and the project itself
# (editable, without touching its dependencies). uv, because it installs the ~60 packages of
# the dev lock in seconds where pip takes about a minute. PYTHON=/path/to/python3.x chooses
# the interpreter for a new .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

lock=requirements/runtime.lock
uv_only=0
case "${1:-}" in
    "") ;;
    --dev) lock=requirements/dev.lock ;;
    --uv-only) uv_only=1 ;; # for scripts/setup-dev.sh --relock: .venv with the pinned uv, no more
    *) printf 'usage: scripts/setup.sh [--dev]\n' >&2; exit 2 ;;
esac

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
start=$(date +%s)

python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    command -v "$python" >/dev/null || die "$python not found (set PYTHON=/path/to/python3.11+)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "qis-data needs Python >= 3.11; $python is $("$python" -V 2>&1)"
    "$python" -m venv .venv
    log "created .venv with $(.venv/bin/python -V)"
fi
.venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die ".venv has $(.venv/bin/python -V 2>&1); qis-data needs >= 3.11: remove .venv and rerun"

# 1. uv, exactly the pinned version.
uv_pinned="$(sed -n 's/^uv==\([^ ;\\]*\).*/\1/p' requirements/bootstrap.lock)"
[[ -n "$uv_pinned" ]] || die "no uv pin in requirements/bootstrap.lock"
if [[ "$(.venv/bin/uv --version 2>/dev/null || true)" != "uv $uv_pinned" ]]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
        -r requirements/bootstrap.lock
fi
[[ $uv_only == 0 ]] || exit 0

# 2. The lock (every package pinned, with hashes), then the project without its dependencies
# (all in the lock) and without build isolation (setuptools comes from the lock too).
uv() { .venv/bin/uv "$@"; }
uv pip install --quiet --python .venv/bin/python --require-hashes -r "$lock"
uv pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation -e .
uv pip check --quiet --python .venv/bin/python
log "python environment ready in $(($(date +%s) - start))s: .venv from $lock"

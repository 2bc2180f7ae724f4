#!/usr/bin/env bash
# Set-up for developers and CI: everything scripts/test.sh needs.
#
#   scripts/setup-dev.sh                     .venv from requirements/dev.lock (scripts/setup.sh
#                                            --dev), the FerretDB test server (Go; built once into
#                                            ~/.cache/qis), buf (npm, pinned in package-lock.json),
#                                            Redis for the query cache's tests (Debian's
#                                            redis-server, unpacked once into ~/.cache/qis),
#                                            the clients in other languages (clients/*/setup.sh)
#   scripts/setup-dev.sh --relock [ARGS...]  first recompile the lock files from pyproject.toml
#                                            with uv, keeping every pin that still fits (ARGS go
#                                            to `uv pip compile`, e.g. --upgrade-package
#                                            grpcio-tools, or --upgrade for everything)
#
# After a relock that moves grpcio-tools, mypy-protobuf, protobuf or googleapis-common-protos,
# run scripts/gen_protos.sh and commit the regenerated libs/contracts with the lock files.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup-dev: %s\n' "$*"; }
start=$(date +%s)

if [[ "${1:-}" == "--relock" ]]; then
    shift
    ./scripts/setup.sh --uv-only # the pinned uv, in .venv
    # One Python version and every platform (--universal): the same lock on Linux, macOS and
    # Windows; --no-strip-extras keeps grpcio[protobuf] (kurrentdbclient asks for that extra,
    # and pip's hash-checking mode needs it pinned as such, e.g. in the Dockerfile).
    compile() {
        .venv/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
            --no-strip-extras --custom-compile-command "scripts/setup-dev.sh --relock" "$@"
    }
    compile pyproject.toml -o requirements/runtime.lock "$@"
    # The dev lock holds the runtime lock's versions (-c), so tests run what users get.
    compile pyproject.toml --extra dev -c requirements/runtime.lock -o requirements/dev.lock "$@"
    uv_version="$(sed -n 's/^uv==\([^ ;\\]*\).*/\1/p' requirements/dev.lock)"
    printf 'uv==%s\n' "$uv_version" | compile - -o requirements/bootstrap.lock
    log "recompiled requirements/{runtime,dev,bootstrap}.lock"
fi

./scripts/setup.sh --dev
./scripts/setup_ferretdb.sh
./scripts/setup_redis.sh # Debian's redis-server, unpacked into ~/.cache/qis unless on PATH
npm ci --silent --no-audit --no-fund
log "buf ready: node_modules/.bin/buf"
clients/ts/setup.sh # the TypeScript client and its generator (npm ci in clients/ts)
clients/go/setup.sh # the Go client's modules and its pinned generator plugins
log "developer environment ready in $(($(date +%s) - start))s; run scripts/test.sh"

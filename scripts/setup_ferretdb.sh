#!/usr/bin/env bash
# Build the FerretDB binary that the MongoDB read-store tests run against.
#
# Result: ${QIS_CACHE_DIR:-$HOME/.cache/qis}/ferretdb/<version>/ferretdb (outside the clone).
# Idempotent: when that binary exists and `--version` works, it only prints the path.
# Set QIS_FERRETDB_REBUILD=1 to force a rebuild.
#
# Why not `go install github.com/FerretDB/FerretDB/cmd/ferretdb@<version>`: that binary panics at
# start. build/version/version.go reads the embedded build/version/version.txt whenever the build
# info's main module is github.com/FerretDB/FerretDB, and that generated file is not in the module
# zip. A wrapper module with a `tool` directive does not help either: Go records the tool's own
# module as the main module, so the same panic happens. Instead the script copies the module
# source out of the Go module cache, writes version.txt, and builds inside that copy, so the
# module's own go.mod/go.sum pin every dependency exactly as upstream released it.
set -euo pipefail

FERRETDB_VERSION="v1.24.2"
FERRETDB_MODULE="github.com/FerretDB/FerretDB"

cache_root="${QIS_CACHE_DIR:-$HOME/.cache/qis}"
dest_dir="$cache_root/ferretdb/$FERRETDB_VERSION"
bin="$dest_dir/ferretdb"

log() { printf 'setup_ferretdb: %s\n' "$*"; }
die() { printf 'setup_ferretdb: ERROR: %s\n' "$*" >&2; exit 1; }

if [[ "${QIS_FERRETDB_REBUILD:-0}" != "1" && -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
    log "FerretDB $FERRETDB_VERSION already built"
    printf '%s\n' "$bin"
    exit 0
fi

go_bin="${GO:-}"
if [[ -z "$go_bin" ]]; then
    go_bin="$(command -v go || true)"
    [[ -n "$go_bin" ]] || go_bin=/usr/local/go/bin/go
fi
[[ -x "$go_bin" ]] || die "Go toolchain not found (set GO=/path/to/go or put go on PATH)"

# FerretDB v1.24's go.mod says `go 1.24`; use the local toolchain, never download another one.
export GOTOOLCHAIN=local
export CGO_ENABLED=0 # pure-Go build (SQLite via modernc.org/sqlite): static binary

go_version="$("$go_bin" env GOVERSION)" # e.g. go1.26.8
if [[ ! "$go_version" =~ go([0-9]+)\.([0-9]+) ]] \
    || (( BASH_REMATCH[1] == 1 && BASH_REMATCH[2] < 24 )); then
    die "FerretDB $FERRETDB_VERSION needs Go >= 1.24, found $go_version ($go_bin)"
fi

start=$(date +%s)
log "building FerretDB $FERRETDB_VERSION with $go_version (takes ~1-2 min on a cold Go cache)"

mkdir -p "$dest_dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/qis-ferretdb-build.XXXXXX")"
tmp_bin="$(mktemp "$dest_dir/.ferretdb.tmp.XXXXXX")"
build_log="$work/build.log"
go_pid=""
cleanup() {
    # On a signal, stop the go command and its compilers (their own process group, see run_go).
    if [[ -n "$go_pid" ]]; then
        kill -TERM -- "-$go_pid" 2>/dev/null || true
        wait "$go_pid" 2>/dev/null || true
    fi
    chmod -R u+w "$work" 2>/dev/null || true # module cache copies are read-only
    rm -rf "$work"
    rm -f "$tmp_bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP # run cleanup on signals too

fail() {
    printf 'setup_ferretdb: ERROR: %s; go output:\n' "$1" >&2
    cat "$build_log" >&2
    exit 1
}

# go's own temp dirs (go-build*) go inside $work, so they are removed even if go is killed.
export GOTMPDIR="$work/gotmp"
mkdir -p "$GOTMPDIR"

# Run the go command in the background, in its own process group (set -m), and wait, so that a
# signal reaches the trap at once (bash defers traps while a foreground child runs) and the
# trap can stop go with all its compilers. Output goes to $build_log.
run_go() {
    local rc=0
    set -m
    "$go_bin" "$@" >"$build_log" 2>&1 &
    go_pid=$!
    set +m
    wait "$go_pid" || rc=$?
    go_pid=""
    return "$rc"
}

# 1. Fetch the module source into the Go module cache (run outside any module).
run_go -C "$work" mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" \
    || fail "go mod download failed"
src_dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$build_log" | head -n 1)"
[[ -n "$src_dir" && -f "$src_dir/go.mod" ]] || fail "could not find the module directory"

# 2. Writable copy of the module with the generated version file the release build would have.
cp -R "$src_dir" "$work/src"
chmod -R u+w "$work/src"
printf '%s\n' "$FERRETDB_VERSION" >"$work/src/build/version/version.txt"

# 3. Build inside the copy (main module = FerretDB; its go.sum pins all dependencies).
build() {
    run_go -C "$work/src" build -trimpath -buildvcs=false "$@" -o "$tmp_bin" ./cmd/ferretdb
}
backend="SQLite + PostgreSQL"
if ! build; then
    log "WARNING: build with the SQLite backend failed; go output:"
    sed 's/^/    /' "$build_log" | tail -n 30
    log "WARNING: falling back to -tags ferretdb_no_sqlite: only the PostgreSQL backend will work"
    backend="PostgreSQL only (SQLite backend FAILED to compile)"
    build -tags ferretdb_no_sqlite || fail "go build failed (also without SQLite)"
fi

"$tmp_bin" --version >"$build_log" 2>&1 || fail "the built binary does not run"
chmod 0755 "$tmp_bin"
mv -f "$tmp_bin" "$bin" # atomic rename on the same filesystem

size=$(du -h "$bin" | cut -f1)
log "built in $(($(date +%s) - start))s: backends: $backend; size $size"
log "$(head -n 1 <<<"$("$bin" --version)")"
printf '%s\n' "$bin"

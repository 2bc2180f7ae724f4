#!/usr/bin/env bash
# Lints the protobuf contracts with buf, checks their formatting, and checks them for breaking
# changes against the main branch. Needs node/npm (buf is pinned in package.json) and the
# project's Python environment (for the googleapis-common-protos imports); no remote registry.
#
#   scripts/lint_protos.sh            lint + format check + breaking check
#   QIS_BUF_AGAINST=origin/main ...   compare against another git ref (default: main)
#   QIS_BUF_BREAKING=0 ...            skip the breaking check
#
# How google/* imports resolve: buf v2 has no include-path flag, so the google/api, google/rpc
# and google/type files our protos import (transitively) are copied from the installed
# googleapis-common-protos package into .buf-deps/, a second module of the buf.yaml workspace
# that is neither linted nor checked for breaking changes. google/protobuf/* are built into buf.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
py="${QIS_PYTHON:-.venv/bin/python}"
buf_bin="$root/node_modules/.bin/buf"

log() { printf 'lint_protos: %s\n' "$*"; }
die() { printf 'lint_protos: ERROR: %s\n' "$*" >&2; exit 1; }

# 1. buf from package-lock.json: install when missing or not the pinned version.
pinned="$(node -p 'require("./package-lock.json").packages["node_modules/@bufbuild/buf"].version')" \
    || die "cannot read the pinned buf version from package-lock.json (is node installed?)"
if [[ ! -x "$buf_bin" ]] || [[ "$("$buf_bin" --version 2>/dev/null)" != "$pinned" ]]; then
    log "installing buf $pinned (npm ci)"
    npm ci --silent --no-audit --no-fund
fi
buf() { "$buf_bin" "$@"; }

# 2. .buf-deps/: the google/* files imported (transitively) by the protos under the given roots.
# Usage: copy_deps DEST_DIR PROTO_ROOT...
copy_deps() { "$py" scripts/google_protos.py "$@"; }
rm -rf .buf-deps
mkdir -p .buf-deps
log "deps: $(copy_deps .buf-deps protos)"

# 3. Lint (buf.yaml: STANDARD + COMMENTS on protos/, nothing on .buf-deps/).
buf lint
log "buf lint: clean"

# 4. Formatting of our protos (buf format -w protos fixes it).
if ! buf format protos --diff --exit-code; then
    die "protos are not buf-formatted: run 'node_modules/.bin/buf format -w protos'"
fi
log "buf format: clean"

# 5. Breaking changes against the main branch (or $QIS_BUF_AGAINST).
#
# Not `buf breaking --against '.git#branch=main,subdir=protos'`: buf would build main's protos
# without .buf-deps/ (git-ignored), so their google/* imports would not resolve, and main may not
# have a buf.yaml yet. Instead main's protos/ is exported (read-only git commands) into a
# temporary workspace with the current buf.yaml and its own .buf-deps/, and that directory is the
# against input. Works offline.
if [[ "${QIS_BUF_BREAKING:-1}" == "0" ]]; then
    log "buf breaking: skipped (QIS_BUF_BREAKING=0)"
    exit 0
fi
against="${QIS_BUF_AGAINST:-main}"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    log "buf breaking: skipped: not a git work tree"
    exit 0
fi
if ! against_commit="$(git rev-parse --verify --quiet "$against^{commit}")"; then
    log "buf breaking: skipped: no commit '$against' to compare against (first commit, or a" \
        "clone without that branch: fetch it or set QIS_BUF_AGAINST)"
    exit 0
fi
if ! git cat-file -e "$against_commit:protos" 2>/dev/null; then
    log "buf breaking: skipped: '$against' ($against_commit) has no protos/ yet"
    exit 0
fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/qis-buf-against.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
git archive "$against_commit" protos | tar -x -C "$tmp"
cp buf.yaml "$tmp/buf.yaml"
mkdir -p "$tmp/.buf-deps"
copy_deps "$tmp/.buf-deps" "$tmp/protos" >/dev/null
buf breaking --against "$tmp"
log "buf breaking: no breaking change against $against (${against_commit:0:12})"

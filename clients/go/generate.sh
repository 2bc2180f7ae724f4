#!/usr/bin/env bash
# Regenerates the Go code of protos/qis into clients/go/gen (never edit it by hand), with buf
# (pinned in package-lock.json) and the plugins clients/go/setup.sh installs at the versions in
# tools.env. Only protos/qis is generated: the google/* types' Go packages come from modules.
#
#   clients/go/generate.sh            regenerate clients/go/gen
#   clients/go/generate.sh --check    generate into a temporary directory and compare: exit 1 and
#                                     a diff when clients/go/gen is not what the protos give
#   QIS_PROTOS=DIR ...                take the protos from DIR instead of protos/ (e.g. a
#                                     `git archive` of a commit)
#
# buf compiles the protos in a temporary workspace: protos/ plus the google/api, google/rpc and
# google/type files they import (transitively), copied from the googleapis-common-protos Python
# package of the project's environment ($QIS_PYTHON, default .venv/bin/python), as
# scripts/lint_protos.sh does; no remote registry is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
# shellcheck source=tools.env
source "$here/tools.env"
py="${QIS_PYTHON:-$root/.venv/bin/python}"
buf_bin="${QIS_BUF:-$root/node_modules/.bin/buf}"
protos="${QIS_PROTOS:-$root/protos}"

die() { printf 'clients/go/generate: ERROR: %s\n' "$*" >&2; exit "${2:-1}"; }

check=0
case "${1:-}" in
    "") ;;
    --check) check=1 ;;
    *) die "unknown argument '$1' (usage: generate.sh [--check])" 2 ;;
esac

# 1. The pinned tools.
[[ -x "$buf_bin" ]] || die "no buf at $buf_bin: run 'npm ci' (or scripts/setup-dev.sh)" 3
export PATH="$here/.bin:$PATH"
version_of() { "$here/.bin/$1" --version 2>/dev/null | awk '{print $NF}'; }
for pair in "protoc-gen-go $PROTOC_GEN_GO_VERSION" "protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION"; do
    read -r name want <<<"$pair"
    have="$(version_of "$name" || true)"
    if [[ "$have" != "$want" && "$have" != "${want#v}" ]]; then
        die "$name is ${have:-not installed} in clients/go/.bin, tools.env pins $want: run clients/go/setup.sh" 3
    fi
done

# 2. A temporary buf workspace: our protos and the google/* files they import.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/qis-go-gen.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ws/protos" "$tmp/ws/deps" "$tmp/out"
cp -R "$protos/qis" "$tmp/ws/protos/qis"
"$py" "$root/scripts/google_protos.py" "$tmp/ws/deps" "$tmp/ws/protos" >/dev/null || die "cannot copy the google/* protos (is $py the project's environment?)"
cat >"$tmp/ws/buf.yaml" <<'YAML'
version: v2
modules:
  - path: protos
  - path: deps
YAML

# 3. Generate (only the protos module is targeted), then install or compare.
"$buf_bin" generate "$tmp/ws/protos" --template "$here/buf.gen.yaml" --output "$tmp/out"
if [[ "$check" == 1 ]]; then
    if ! diff -ru "$here/gen" "$tmp/out/gen"; then
        die "clients/go/gen is not what the protos generate: run clients/go/generate.sh and commit it"
    fi
    echo "clients/go/generate: clients/go/gen is current"
else
    rm -rf "$here/gen"
    cp -R "$tmp/out/gen" "$here/gen"
    echo "clients/go/generate: $(find "$here/gen" -name '*.go' | wc -l) files in clients/go/gen"
fi

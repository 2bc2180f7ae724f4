#!/usr/bin/env bash
# Regenerates src/gen/ (TypeScript, protobuf-es) from protos/qis/data/v1 and the google/api,
# google/rpc and google/type protos they use, plus google/rpc/error_details.proto (the error
# details src/qis.ts decodes). Needs `npm ci` done here (./setup.sh) and the project's Python
# environment, whose googleapis-common-protos package provides the google/* protos (the same
# files scripts/gen_protos.sh compiles the Python code against). google/protobuf/* types come
# from @bufbuild/protobuf/wkt and are not generated.
#
#   ./generate.sh           rewrite src/gen/
#   ./generate.sh --check   regenerate into a temporary directory; exit 1 if src/gen/ differs
set -euo pipefail
cd "$(dirname "$0")"
here="$PWD"
root="$(cd ../.. && pwd)"
py="${QIS_PYTHON:-$root/.venv/bin/python}"
buf="$here/node_modules/.bin/buf"

die() { printf 'generate.sh: ERROR: %s\n' "$*" >&2; exit 1; }
[[ -x "$buf" && -x node_modules/.bin/protoc-gen-es ]] || die "run ./setup.sh first (npm ci)"
[[ -x "$py" ]] || die "no Python at $py (run scripts/setup-dev.sh, or set QIS_PYTHON)"

check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) die "usage: $0 [--check]" ;;
esac

tmp="$(mktemp -d "${TMPDIR:-/tmp}/qis-ts-gen.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# The input: a buf workspace of two modules, our protos and the google/* files they import
# (transitively) plus error_details.proto. Every file of the workspace is generated.
mkdir -p "$tmp/in/protos" "$tmp/in/deps"
cp -R "$root/protos/qis" "$tmp/in/protos/"
cat > "$tmp/in/buf.yaml" <<'YAML'
version: v2
modules:
  - path: protos
  - path: deps
YAML
"$py" "$root/scripts/google_protos.py" "$tmp/in/deps" "$tmp/in/protos" --also google/rpc/error_details.proto >/dev/null

out="$here"
[[ $check == 1 ]] && out="$tmp/out"
rm -rf "$out/src/gen"
"$buf" generate "$tmp/in" --template "$here/buf.gen.yaml" --output "$out"

if [[ $check == 1 ]]; then
    if ! diff -r -u "$here/src/gen" "$tmp/out/src/gen"; then
        die "clients/ts/src/gen is not what the protos generate: run clients/ts/generate.sh and commit it"
    fi
    echo "generate.sh: clients/ts/src/gen is current"
else
    echo "generate.sh: wrote $(find src/gen -name '*.ts' | wc -l) files under clients/ts/src/gen"
fi

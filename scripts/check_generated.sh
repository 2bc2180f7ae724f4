#!/usr/bin/env bash
# Fails when libs/contracts is not exactly what scripts/gen_protos.sh makes of protos/.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(mktemp -d)"
trap 'rm -rf "$before"' EXIT
cp -R libs/contracts/qis "$before/qis"
./scripts/gen_protos.sh >/dev/null 2>&1
if ! diff -r -x __pycache__ "$before/qis" libs/contracts/qis >/dev/null; then
  diff -r -x __pycache__ "$before/qis" libs/contracts/qis | head -20
  echo "libs/contracts is out of date: run scripts/gen_protos.sh and commit the result" >&2
  exit 1
fi
echo "generated code matches protos/"

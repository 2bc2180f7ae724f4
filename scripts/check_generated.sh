#!/usr/bin/env bash
# Fails when libs/contracts is not exactly what scripts/gen_protos.sh makes of protos/, i.e. when
# someone changed protos/ (or the generator's pins in requirements/dev.lock) and did not
# regenerate. The generator is pinned, so a new grpcio-tools release changes nothing here; an
# environment whose generator differs from the lock is reported as such (exit 3), not as
# out-of-date code. Generates into a temporary directory: the work tree is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
rc=0
output="$(./scripts/gen_protos.sh "$fresh" 2>&1)" || rc=$?
if [[ $rc -ne 0 ]]; then
  printf '%s\n' "$output" >&2
  echo "check_generated: could not run scripts/gen_protos.sh (exit $rc)" >&2
  exit "$rc"
fi
if ! diff -r -x __pycache__ "$fresh/qis" libs/contracts/qis >/dev/null; then
  diff -r -x __pycache__ "$fresh/qis" libs/contracts/qis | head -20
  echo "libs/contracts is out of date: run scripts/gen_protos.sh and commit the result" >&2
  exit 1
fi
echo "generated code matches protos/"

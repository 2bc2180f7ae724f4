#!/usr/bin/env bash
# Regenerates the Python code and typed stubs of protos/ into libs/contracts (never edit those by
# hand). google/* imports come from the googleapis-common-protos package, which also provides
# their Python modules at run time.
#
#   scripts/gen_protos.sh [OUT_DIR]     default OUT_DIR: libs/contracts (check_generated.sh
#                                       generates into a temporary directory and compares)
#
# The output depends on the generator's versions, so they are pinned: grpcio-tools (protoc and
# the gRPC plugin), mypy-protobuf (the stubs), protobuf and googleapis-common-protos (the google/*
# protos) must be installed at exactly their versions in requirements/dev.lock, or this script
# refuses to run (exit 3) and says what to do: scripts/setup-dev.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${QIS_PYTHON:-.venv/bin/python}"
out="${1:-libs/contracts}"

# 1. The generator is the one the lock pins.
"$py" - requirements/dev.lock <<'PY' || exit 3
import re
import sys
from importlib.metadata import PackageNotFoundError, version

with open(sys.argv[1], encoding="utf-8") as f:
    lock = f.read()
wrong = []
for name in ("grpcio-tools", "mypy-protobuf", "protobuf", "googleapis-common-protos"):
    pins = set(re.findall(rf"^{re.escape(name)}(?:\[[^\]]*\])?==([^\s;\\]+)", lock, re.M))
    if len(pins) != 1:
        sys.exit(f"gen_protos: ERROR: expected one pin of {name} in {sys.argv[1]}, found {pins}")
    (pinned,) = pins
    try:
        installed = version(name)
    except PackageNotFoundError:
        installed = "not installed"
    if installed != pinned:
        wrong.append(f"{name} {installed} (lock: {pinned})")
if wrong:
    sys.exit(
        f"gen_protos: ERROR: the code generator in {sys.executable} is not the pinned one: "
        + ", ".join(wrong)
        + ". Run scripts/setup-dev.sh (installs requirements/dev.lock), then retry."
    )
PY

# 2. Generate.
common_protos="$("$py" -c 'import google.api.annotations_pb2 as m, os; print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')"
rm -rf "$out/qis"
mkdir -p "$out"
mapfile -t files < <(find protos -name '*.proto' | sort)
"$py" -m grpc_tools.protoc \
  -I protos -I "$common_protos" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  --plugin=protoc-gen-mypy="$(dirname "$py")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$py")/protoc-gen-mypy_grpc" \
  "${files[@]}"
# Packages, so that setuptools and mypy see the generated modules.
find "$out/qis" -type d -exec sh -c 'touch "$1/__init__.py"' _ {} \;
touch "$out/qis/py.typed"
echo "generated $(find "$out/qis" -name "*_pb2*.py" | wc -l) modules into $out"

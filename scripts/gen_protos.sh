#!/usr/bin/env bash
# Regenerates the Python code and typed stubs of protos/ into libs/contracts (never edit those by
# hand). google/* imports come from the googleapis-common-protos package, which also provides
# their Python modules at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${QIS_PYTHON:-.venv/bin/python}"
common_protos="$("$py" -c 'import google.api.annotations_pb2 as m, os; print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')"
out=libs/contracts
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

"""Copies the google/* protos that ours import (transitively) out of the installed
googleapis-common-protos package — the same files scripts/gen_protos.sh compiles against — so
buf and the clients' generators need no remote registry.

    python scripts/google_protos.py DEST PROTO_ROOT... [--also google/rpc/error_details.proto]

google/protobuf/* (the well-known types) are built into every toolchain and not copied.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys

import google.api.annotations_pb2 as anchor

_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.M)


def _imported(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return _IMPORT.findall(f.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dest")
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--also", action="append", default=[], help="a google/* file to add")
    args = parser.parse_args()
    # site-packages dir holding google/api, google/rpc, google/type (.proto files included)
    common = os.path.dirname(os.path.dirname(os.path.dirname(anchor.__file__)))
    todo = list(args.also) + [
        name
        for root in args.roots
        for d, _, files in os.walk(root)
        for f in files
        if f.endswith(".proto")
        for name in _imported(os.path.join(d, f))
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or not name.startswith("google/") or name.startswith("google/protobuf/"):
            continue
        seen.add(name)
        src = os.path.join(common, name)
        if not os.path.isfile(src):
            sys.exit(f"{name} is needed but not in googleapis-common-protos ({common})")
        os.makedirs(os.path.dirname(os.path.join(args.dest, name)), exist_ok=True)
        shutil.copyfile(src, os.path.join(args.dest, name))
        todo.extend(_imported(src))
    print(f"{len(seen)} google/* files into {args.dest}")


if __name__ == "__main__":
    main()

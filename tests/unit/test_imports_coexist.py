"""Every module of ours loads in one process with the KurrentDB client.

kurrentdbclient ships its own google/rpc/code.proto; loading googleapis' copy as well makes the
protobuf runtime refuse the second one (duplicate symbol 'google.rpc.Code'). A fresh interpreter
is used because within a test session the import order of earlier tests would decide.
"""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "qis_runtime.errors",
    "qis_runtime.server",
    "qis_command.bootstrap",
    "qis_projector.bootstrap",
    "qis_query.bootstrap",
    "qis_cli.main",
    "qis_adapters.readstore.mongodb",
    "qis_feeds.bootstrap",
    "qis_feeds.main",
]


def test_our_modules_and_the_kurrentdb_client_load_together_in_either_order() -> None:
    for order in (["kurrentdbclient", *MODULES], [*MODULES, "kurrentdbclient"]):
        code = f"import importlib\nfor m in {order!r}: importlib.import_module(m)\n"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]

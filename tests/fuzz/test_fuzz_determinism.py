"""A derandomized fuzz test draws the same examples whatever the process imported before it: a
pytest-xdist worker runs whichever test files it is handed first, and those import modules of
their own."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

PROFILE = settings.get_profile("qis-fuzz")
# Raw requests of a message with a map (DataSource.settings), drawn as the fuzz tests draw them.
RAW_DRAWS = """
import hashlib
from hypothesis import given, settings
from qis.data.v1 import command_service_pb2
from tests.fuzz.fuzz_messages import Pools, RequestFuzzer
import tests.fuzz.conftest
seen = []
raw = RequestFuzzer(Pools()).raw(command_service_pb2.RegisterDataSourceRequest.DESCRIPTOR)
@settings(settings.get_profile("qis-fuzz"), max_examples=200)
@given(raw)
def sample(request):
    seen.append(request)
sample()
print(hashlib.sha256(b"|".join(seen)).hexdigest())
"""


def drawn() -> list[int]:
    seen: list[int] = []

    @settings(PROFILE, max_examples=300)
    @given(st.integers())
    def sample(n: int) -> None:
        seen.append(n)

    sample()
    return seen


def test_importing_a_module_does_not_change_the_draws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = drawn()
    # A module of this project's own (not of site-packages), full of constants hypothesis would
    # pick up: what a test file run earlier on the same worker imports.
    constants = ", ".join(str(7_000_001 + 13 * i) for i in range(50))
    (tmp_path / "fz_probe_constants.py").write_text(f"LIMITS = ({constants})\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "fz_probe_constants", raising=False)
    importlib.import_module("fz_probe_constants")
    assert drawn() == before


def test_raw_requests_are_the_same_bytes_in_every_process() -> None:
    """Protobuf writes map entries in an order of its own per process (it varies with the hash
    seed); the raw requests are mutations of encodings, so theirs must be in a fixed order."""

    def digest(hash_seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run(
            [sys.executable, "-c", RAW_DRAWS], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert digest("1") == digest("2")

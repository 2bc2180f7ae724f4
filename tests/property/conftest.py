"""Hypothesis profiles of the property tests.

`ci` (the default): few examples (each ingests 22 years of closes, about a second), derandomized
and without an example database, so every run tries the same examples and CI is reproducible.
`nightly` (`QIS_HYPOTHESIS_PROFILE=nightly`): many random examples, with shrinking, failures kept
in an example database outside the repository (`QIS_HYPOTHESIS_DATABASE`, default
~/.cache/qis/hypothesis) so the next run tries them first, and a per-test timeout of hours.
Hypothesis itself keeps a small cache in `.hypothesis/`, which it marks ignored for git.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.property.profiles import CHOSEN, NIGHTLY_TIMEOUT_S


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Nightly runs take far longer than the suite's per-test timeout allows."""
    if CHOSEN != "nightly":
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(NIGHTLY_TIMEOUT_S))

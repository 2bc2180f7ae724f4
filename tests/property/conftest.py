"""Hypothesis profiles of the property tests.

`ci` (the default): few examples (each ingests 22 years of closes, about a second), derandomized
and without an example database, so every run tries the same examples and CI is reproducible.
`nightly` (`QIS_HYPOTHESIS_PROFILE=nightly`): many random examples, with shrinking, failures kept
in an example database outside the repository (`QIS_HYPOTHESIS_DATABASE`, default
~/.cache/qis/hypothesis) so the next run tries them first, and a per-test timeout of hours.
Hypothesis itself keeps a small cache in `.hypothesis/`, which it marks ignored for git.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

# Each example ingests a 22-year history through the service: far slower than hypothesis
# expects of one example, which is the point.
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
NIGHTLY_TIMEOUT_S = 3 * 3600

settings.register_profile(
    "qis-property-ci",
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW,
    # Shrinking a 22-year history can take minutes; CI reports the example it found.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
settings.register_profile(
    "qis-property-nightly",
    max_examples=150,
    deadline=None,
    database=DirectoryBasedExampleDatabase(
        os.environ.get("QIS_HYPOTHESIS_DATABASE") or Path.home() / ".cache" / "qis" / "hypothesis"
    ),
    suppress_health_check=_SLOW,
    print_blob=True,
)
CHOSEN = os.environ.get("QIS_HYPOTHESIS_PROFILE", "ci")
# The tests apply "qis-property" themselves (@settings(PROPERTY)) rather than this file loading
# it as the global default: other suites' hypothesis tests keep their own settings.
settings.register_profile("qis-property", parent=settings.get_profile(f"qis-property-{CHOSEN}"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Nightly runs take far longer than the suite's per-test timeout allows."""
    if CHOSEN != "nightly":
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(NIGHTLY_TIMEOUT_S))

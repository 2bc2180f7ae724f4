"""Hypothesis profiles of the property tests (see conftest.py), registered when first imported:
by conftest.py, and by any module that uses PROPERTY, so that a test file elsewhere importing
from tests/property collects on its own too."""

from __future__ import annotations

import os
from pathlib import Path

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
PROPERTY = settings.get_profile("qis-property")

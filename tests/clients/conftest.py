"""The Python client's tests import `qis_client` from the source tree: the project's .venv has
the server packages installed, not clients/python (which a client's own venv installs)."""

from __future__ import annotations

import sys
from pathlib import Path

CLIENT_SOURCE = Path(__file__).resolve().parents[2] / "clients" / "python"
if str(CLIENT_SOURCE) not in sys.path:
    sys.path.insert(0, str(CLIENT_SOURCE))

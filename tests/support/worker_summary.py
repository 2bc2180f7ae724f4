"""Terminal-summary sections made in pytest-xdist workers. Only the controller writes the
terminal summary, and it loads no conftest below tests/: a suite whose summary is made where
its tests ran hands it to the controller in the worker's `workeroutput`, and tests/conftest.py
writes it."""

from __future__ import annotations

from typing import Any, Final

import pytest

KEY: Final = "qis-summary-sections"


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workeroutput")


def hand_to_controller(config: pytest.Config, title: str, text: str) -> None:
    """In a worker (is_worker), at pytest_sessionfinish: a section for the controller to write."""
    output: dict[str, Any] = getattr(config, "workeroutput")  # noqa: B009 - xdist sets it
    output.setdefault(KEY, []).append((title, text))


def sections(worker_output: dict[str, Any]) -> list[tuple[str, str]]:
    """The sections a finished worker handed over."""
    return [(title, text) for title, text in worker_output.get(KEY, [])]

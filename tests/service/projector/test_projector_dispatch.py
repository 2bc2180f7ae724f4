"""Every event type the domain can record is projected, or left out on purpose."""

from __future__ import annotations

from qis_domain.events import ALL_EVENT_TYPES, CommandAccepted, DataReconciled
from qis_domain.events.scheduler import SchedulerCheckpointed
from qis_projector.application.projection import _HANDLERS

LEFT_OUT = {DataReconciled, CommandAccepted, SchedulerCheckpointed}
"""Candidates live in the write model, the read side serves official values; a command's
record is how the write side recognises a repeat (the events it caused are audited); the
scheduler's checkpoint is where its process resumes, no data (the commands it issues are
audited)."""


def test_each_event_type_has_a_projection_or_is_left_out_on_purpose() -> None:
    assert set(ALL_EVENT_TYPES) - set(_HANDLERS) == LEFT_OUT
    assert not set(_HANDLERS) - set(ALL_EVENT_TYPES)

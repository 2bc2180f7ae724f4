"""Who may send which command: the permission and resource each command needs, checked against
the access policies (qis_domain.access) before the command is handled. A refusal stores nothing
of the command: only its record, an AccessDenied event in a stream of its own.

The policies are read from their stream before every check, so a change made by any instance is
in force at the next command; what they compile to, and the decisions that do not depend on the
time, are kept until the stream's version moves.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from qis_adapters.eventstore.codec import EventCodec
from qis_adapters.eventstore.port import EventStore, StreamAppend, StreamState
from qis_domain.access import (
    ADMINS_POLICY_ID,
    ANYONE,
    POLICIES_RESOURCE,
    POLICIES_STREAM,
    AccessContext,
    AccessPolicies,
    Caller,
    PolicySet,
    admins_policy,
    denial_stream,
    issues_name,
)
from qis_domain.commands import CommandContext
from qis_domain.definitions import Classification, Permission
from qis_domain.events import AccessDenied
from qis_domain.names import series_name, source_name
from qis_domain.reference_data import ReferenceData, definition_stream
from qis_domain.routing import topic_name
from qis_runtime.authorization import Decisions, Refused, names

from qis_command.application.commands import (
    CalculateQualityMetrics,
    CheckpointConsumerGroup,
    ConfigureSource,
    DefineSeries,
    DeleteAccessPolicy,
    DeleteTopic,
    EvolveSeries,
    IngestPoints,
    ParkTopicEntry,
    PublishPoints,
    RecordDenial,
    RegisterSource,
    ReplayParkedEntries,
    ReportSourceHealth,
    ResolveIssues,
    RestatePoint,
    ServiceCommand,
    SetAccessPolicy,
    SetTopic,
)
from qis_command.application.repository import Repository

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Need:
    """What a command needs: `permission` on `resource`, and the attributes conditions look at."""

    permission: Permission
    resource: str
    series_id: str | None = None
    """The series whose classification counts."""
    source_id: str | None = None
    classification: Classification | None = None
    """The classification the command gives the series (a definition, an evolution)."""


def need_of(command: object) -> Need:
    match command:
        case IngestPoints(series_id=series, source_id=source):
            return Need(Permission.WRITE, series_name(series), series, source)
        case CalculateQualityMetrics(series_id=series):
            return Need(Permission.WRITE, series_name(series), series)
        case PublishPoints(series_id=series) | RestatePoint(series_id=series):
            return Need(Permission.PUBLISH, series_name(series), series)
        case ResolveIssues(series_id=series):
            return Need(Permission.PUBLISH, issues_name(series), series)
        case DefineSeries(series_id=series, definition=definition):
            resource = series_name(series)
            return Need(Permission.ADMIN, resource, series, None, definition.classification)
        case EvolveSeries(series_id=series, update=update):
            named = update.values.get("classification")
            level = None if named is None else Classification(named)
            return Need(Permission.ADMIN, series_name(series), series, None, level)
        case RegisterSource(source_id=source) | ConfigureSource(source_id=source):
            return Need(Permission.ADMIN, source_name(source))
        case ReportSourceHealth(source_id=source):
            # What a feed of the source does, like sending its values: `write`, not `admin`.
            return Need(Permission.WRITE, source_name(source))
        case SetAccessPolicy() | DeleteAccessPolicy():
            return Need(Permission.ADMIN, POLICIES_RESOURCE)
        case SetTopic(name=name) | DeleteTopic(name=name):
            return Need(Permission.ADMIN, topic_name(name))
        case RecordDenial() | CheckpointConsumerGroup() | ParkTopicEntry() | ReplayParkedEntries():
            # Anyone recording denials could fill the audit trail with others' names, anyone
            # moving a group's checkpoint could make it skip entries: a service of
            # QIS_SERVICE_PRINCIPALS (see PolicyAccess) or an administrator of everything.
            return Need(Permission.ADMIN, ANYONE)
    raise TypeError(f"no access rule for {type(command).__name__}")


@dataclass(frozen=True, slots=True)
class Call:
    """The call a command came in: recorded with a denial."""

    method: str
    peer: str


class AccessControl(Protocol):
    async def check(self, command: object, caller: Caller, ctx: CommandContext, call: Call) -> None:
        """Returns when `caller` may send `command`; else PermissionDenied (ACCESS_DENIED)."""
        ...


class OpenAccess:
    """QIS_AUTHZ=open: every authenticated caller may send every command."""

    async def check(self, command: object, caller: Caller, ctx: CommandContext, call: Call) -> None:
        return None


class PolicyAccess:
    """QIS_AUTHZ=policies: deny by default."""

    def __init__(
        self,
        store: EventStore,
        admins: Sequence[str] = (),
        codec: EventCodec | None = None,
        cache_size: int = 10_000,  # decisions, and series definitions, kept
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        services: Sequence[str] = (),
    ) -> None:
        """`services`: the principals that may send the commands about their own work
        (ServiceCommand: their denials, the consumer groups they serve) whatever the policies
        say (QIS_SERVICE_PRINCIPALS)."""
        self._store = store
        self._codec = codec or EventCodec()
        # Its own cache, of small aggregates: it must not push the handlers' buckets out.
        self._repository = Repository(store, self._codec, cache_size)
        self._admins = admins_policy(admins) if admins else None
        self._services = tuple(services)
        self._new_id = new_id
        self._policies = PolicySet({}, version=-2)  # no version a stream has: loaded at first use
        self._decisions = Decisions(cache_size)

    @property
    def evaluations(self) -> int:
        """Observable: what the decision cache saves, in tests and metrics."""
        return self._decisions.evaluations

    async def check(self, command: object, caller: Caller, ctx: CommandContext, call: Call) -> None:
        if isinstance(command, ServiceCommand) and names(self._services, caller):
            return
        need = need_of(command)
        policies = await self._current()
        level = need.classification
        if policies.uses_classification and need.series_id is not None:
            level = _higher(level, await self._classification(need.series_id))
        context = AccessContext(ctx.now_us, level, need.source_id)
        decision = self._decisions.decide(policies, caller, need.permission, need.resource, context)
        if decision.allowed:
            return
        refused = Refused(
            caller,
            call.method,
            call.peer,
            need.permission,
            need.resource,
            context,
            decision,
            policies.version,
        )
        denial_id = self._new_id()
        await record_denial(self._store, self._codec, refused.record(), denial_id, ctx)
        raise refused.error(denial_id)

    async def _current(self) -> PolicySet:
        """The policies as of now: their stream is read on every call (another instance may
        have changed them); what they compile to is kept while its version stays."""
        stored = await self._repository.load(POLICIES_STREAM, AccessPolicies)
        version = -1 if stored.version is None else stored.version
        if version != self._policies.version:
            policies = dict(stored.policies)
            if self._admins is not None:
                policies[ADMINS_POLICY_ID] = self._admins
            self._policies = PolicySet(policies, version)
            self._decisions.clear()
        return self._policies

    async def _classification(self, series_id: str) -> Classification | None:
        series = await self._repository.load(
            definition_stream(series_id), lambda: ReferenceData(series_id)
        )
        return None if series.definition is None else series.definition.classification


async def record_denial(
    store: EventStore, codec: EventCodec, denial: AccessDenied, denial_id: str, ctx: CommandContext
) -> None:
    """Appends the denial's record, in a stream of its own. The refusal stands whatever the
    store does: a record it cannot take is logged at ERROR instead."""
    stream = denial_stream(denial_id)
    try:
        await store.append(
            [StreamAppend(stream, StreamState.NO_STREAM, codec.encode(stream, [denial], ctx))]
        )
    except Exception:
        log.exception("access denial %s not recorded: %s", denial_id, denial.model_dump_json())


def _higher(a: Classification | None, b: Classification | None) -> Classification | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda level: level.rank)

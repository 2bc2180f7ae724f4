"""Who may read what (docs/security.md): `read` on the series a query is about (its exception
queue for the issues, a source for its audit trail, and for the audit trail of everything `read`
or `admin` on `*`), decided with the command side's evaluation (qis_domain.access) and settings
(QIS_AUTHZ, QIS_ADMINS: qis_runtime.authorization). A refusal is PERMISSION_DENIED
(ACCESS_DENIED), and its record goes to the command service: the read side cannot append events.
Listings and subscriptions that span series show only the series the caller may read, the
listing of data sources only the sources (`read` on "sources/{id}"), and the listing of topics
only the topics (`read` on "topics/{name}").

The policies come from their read model (projected from `access/policies`), read again whenever
the read model's checkpoint has moved since they were last read: a change is in force once the
projector has projected it (a query with min_position at or after it is decided on it). What
they compile to, and every decision that does not depend on the time, is kept while their
version stays; the series' classifications (looked up only when a policy limits them) while the
checkpoint stays.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol

from qis.data.v1 import series_pb2
from qis_adapters.proto.definitions import CLASSIFICATIONS
from qis_adapters.readstore.port import ChangeFeedEntry, ReadModelReader, SeriesEntry
from qis_domain.access import (
    ADMINS_POLICY_ID,
    ANYONE,
    AccessContext,
    Caller,
    Decision,
    PolicySet,
    admins_policy,
)
from qis_domain.definitions import (
    DEFAULT_CLASSIFICATION,
    AccessPolicy,
    Classification,
    Permission,
)
from qis_domain.events import AccessDenied
from qis_domain.names import series_name
from qis_runtime.authorization import Decisions, Refused

from qis_query.application.consistency import ReadPosition

log = logging.getLogger(__name__)

READ = (Permission.READ,)
EVERYTHING = ANYONE
"""The resource of the audit trail of every resource (ListAuditEntries' parent "-")."""
ADMIN_OR_READ = (Permission.READ, Permission.ADMIN)
"""What the audit trail of everything needs on EVERYTHING: administrators of everything may
read what happened to anything they can change."""


class Asker(Protocol):
    """Who asks, through which call: what a decision is about and the record of a refusal
    names. Read from the call when a check needs it (QIS_AUTHZ=open never does)."""

    @property
    def caller(self) -> Caller: ...

    @property
    def method(self) -> str: ...

    @property
    def peer(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Call:
    """An Asker already known."""

    caller: Caller
    method: str
    peer: str


class DenialRecorder(Protocol):
    async def record(self, denial: AccessDenied, denial_id: str) -> None:
        """Records the denial. Never raises: the refusal stands whatever happens here."""
        ...


class SeriesGate(Protocol):
    """Which series one caller may read, as of one version of the policies."""

    @property
    def everything(self) -> bool:
        """It lets every series through (nothing to filter)."""
        ...

    async def learn(self, series_ids: Iterable[str]) -> None:
        """Looks up what `allows` needs to know of these series (their classification, when a
        policy limits it)."""
        ...

    def learn_entries(self, entries: Iterable[SeriesEntry]) -> None:
        """`learn`, from catalogue entries at hand."""
        ...

    def allows(self, resource: str, series_id: str) -> bool:
        """Whether the caller may read `resource` of the series `series_id` (learnt first)."""
        ...

    def allows_unclassified(self, resource: str) -> bool:
        """Whether the caller may read a resource that has no classification, so nothing to
        learn first: a data source ("sources/{id}"), a topic ("topics/{name}")."""
        ...


Admit = Callable[[list[ChangeFeedEntry]], Awaitable[list[ChangeFeedEntry]]]
"""What a subscriber may see of a batch of changes, decided as the batch is sent."""


class ReadAccess(Protocol):
    async def require(
        self,
        who: Asker,
        resource: str,
        *,
        series_id: str | None = None,
        min_position: int = 0,
        permissions: Sequence[Permission] = READ,
    ) -> None:
        """Returns when `who` holds one of `permissions` on `resource` (of the series
        `series_id`), decided on the policies as of `min_position` at least; else records the
        denial and raises PermissionDenied (ACCESS_DENIED)."""
        ...

    async def gate(self, who: Asker, min_position: int = 0) -> SeriesGate:
        """What `who` may read, as of the policies at `min_position` at least."""
        ...

    def admit(self, who: Asker, series_ids: Sequence[str]) -> Admit:
        """The changes of a subscription to `series_ids` (every series when empty) that `who`
        may see, decided anew for each batch on the policies then: a subscription to every
        series skips the others, one to named series ends (PERMISSION_DENIED, recorded) at the
        first change of one it may no longer read."""
        ...


class _Everything:
    everything = True

    async def learn(self, series_ids: Iterable[str]) -> None:
        return None

    def learn_entries(self, entries: Iterable[SeriesEntry]) -> None:
        return None

    def allows(self, resource: str, series_id: str) -> bool:
        return True

    def allows_unclassified(self, resource: str) -> bool:
        return True


EVERY_SERIES: SeriesGate = _Everything()


async def admit_all(changes: list[ChangeFeedEntry]) -> list[ChangeFeedEntry]:
    """Every change of a subscription, whoever subscribed."""
    return changes


class OpenAccess:
    """QIS_AUTHZ=open: every authenticated caller may read everything."""

    async def require(
        self,
        who: Asker,
        resource: str,
        *,
        series_id: str | None = None,
        min_position: int = 0,
        permissions: Sequence[Permission] = READ,
    ) -> None:
        return None

    async def gate(self, who: Asker, min_position: int = 0) -> SeriesGate:
        return EVERY_SERIES

    def admit(self, who: Asker, series_ids: Sequence[str]) -> Admit:
        return admit_all


def wall_clock_us() -> int:
    return time.time_ns() // 1_000


class PolicyAccess:
    """QIS_AUTHZ=policies: deny by default."""

    def __init__(
        self,
        reader: ReadModelReader,
        read_position: ReadPosition,
        recorder: DenialRecorder,
        admins: Sequence[str] = (),
        clock_us: Callable[[], int] = wall_clock_us,
        cache_size: int = 10_000,  # decisions, and classifications, kept
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._reader = reader
        self._read_position = read_position
        self._recorder = recorder
        self._admins = admins_policy(admins) if admins else None
        self._clock_us = clock_us
        self._cache_size = cache_size
        self._new_id = new_id
        self._policies = PolicySet({}, version=-2)  # no version a stream has: loaded at first use
        self._read_at: int | None = None  # the checkpoint the policies were read at
        # Counts the times the classifications were forgotten for a new checkpoint: a level read
        # before one of them is not remembered after it (`remember`). The checkpoint itself
        # cannot say so: two reads of it that end out of order take it back and forth.
        self._generation = 0
        self._decisions = Decisions(cache_size)
        self._classifications: dict[str, Classification] = {}
        self.reads = 0
        """Observable: how often the policies were read from the read model."""

    @property
    def evaluations(self) -> int:
        """Observable: what the decision cache saves, in tests and metrics."""
        return self._decisions.evaluations

    async def require(
        self,
        who: Asker,
        resource: str,
        *,
        series_id: str | None = None,
        min_position: int = 0,
        permissions: Sequence[Permission] = READ,
    ) -> None:
        policies = await self._current(min_position)
        level = None
        if policies.uses_classification:
            if series_id is not None:
                level = await self.level(series_id)
            elif resource == EVERYTHING:
                # The audit trail of everything shows every series: a caller limited to lower
                # classifications would learn of the series above his limit.
                level = HIGHEST_CLASSIFICATION
        context = AccessContext(self._clock_us(), level)
        decisions = [
            self._decisions.decide(policies, who.caller, p, resource, context) for p in permissions
        ]
        if not any(d.allowed for d in decisions):
            await self._refuse(who, permissions[0], resource, context, decisions[0], policies)

    async def gate(self, who: Asker, min_position: int = 0) -> SeriesGate:
        return _PolicyGate(self, who.caller, await self._current(min_position))

    def admit(self, who: Asker, series_ids: Sequence[str]) -> Admit:
        every_series = not series_ids

        async def admitted(changes: list[ChangeFeedEntry]) -> list[ChangeFeedEntry]:
            # Decided on the policies as of the last change at least: none is sent that a
            # policy changed before it forbids.
            last = changes[-1].position
            gate = _PolicyGate(self, who.caller, await self._current(last))
            await gate.learn({c.series_id for c in changes})
            if every_series:
                return [c for c in changes if gate.allows(series_name(c.series_id), c.series_id)]
            for change in changes:
                if not gate.allows(series_name(change.series_id), change.series_id):
                    # What the caller was told it follows, it can no longer read: an end it
                    # is told of (and recorded), rather than changes left out in silence.
                    await self.require(
                        who,
                        series_name(change.series_id),
                        series_id=change.series_id,
                        min_position=last,
                    )
            return changes

        return admitted

    async def _refuse(
        self,
        who: Asker,
        permission: Permission,
        resource: str,
        context: AccessContext,
        decision: Decision,
        policies: PolicySet,
    ) -> NoReturn:
        refused = Refused(
            who.caller,
            who.method,
            who.peer,
            permission,
            resource,
            context,
            decision,
            policies.version,
        )
        denial_id = self._new_id()
        await self._recorder.record(refused.record(), denial_id)
        raise refused.error(denial_id)

    async def _current(self, min_position: int) -> PolicySet:
        """The policies as of the read model's checkpoint (at least `min_position`): read again
        when it has moved; compiled again when their version has."""
        checkpoint = await self._read_position.at_least(min_position)
        if checkpoint == self._read_at:
            return self._policies
        entries = await self._reader.access_policies()
        self.reads += 1
        version = max((e.stream_version for e in entries), default=-1)
        if version != self._policies.version:
            policies = {
                e.policy_id: AccessPolicy.model_validate(e.policy)
                for e in entries
                if e.policy is not None
            }
            if self._admins is not None:
                policies[ADMINS_POLICY_ID] = self._admins
            self._policies = PolicySet(policies, version)
            self._decisions.clear()
        # A series' classification may have changed with the checkpoint (an evolution).
        self._classifications.clear()
        self._generation += 1
        self._read_at = checkpoint
        return self._policies

    async def level(self, series_id: str) -> Classification:
        """The series' classification; the strictest for a series the catalogue does not know,
        so that a caller whose policies limit classifications cannot tell a missing series
        (NOT_FOUND) from one above his limit (PERMISSION_DENIED): whether a series exists is
        told only to callers who may read it (docs/security.md). A caller without such a limit
        is not asked for the level, and is still told NOT_FOUND."""
        if series_id in self._classifications:
            return self._classifications[series_id]
        generation = self._generation
        entry = await self._reader.get_series(series_id)
        level = HIGHEST_CLASSIFICATION if entry is None else classification_of(entry)
        self.remember(series_id, level, generation)
        return level

    def remember(self, series_id: str, level: Classification, generation: int) -> None:
        """Kept until the checkpoint moves (a bounded number: all forgotten when full); not
        kept when the classifications were forgotten for a checkpoint since `generation`, when
        `level` was about to be read: it may be of before that checkpoint (a series defined, or
        its classification raised), and would be kept for it until the next."""
        if generation != self._generation:
            return
        if len(self._classifications) >= self._cache_size:
            self._classifications.clear()
        self._classifications[series_id] = level

    def decide(
        self, policies: PolicySet, caller: Caller, resource: str, level: Classification | None
    ) -> Decision:
        """Whether `caller` may read `resource` (of a series classified `level`), now."""
        context = AccessContext(self._clock_us(), level)
        return self._decisions.decide(policies, caller, Permission.READ, resource, context)


class _PolicyGate:
    everything = False

    def __init__(self, access: PolicyAccess, caller: Caller, policies: PolicySet) -> None:
        self._access = access
        self._caller = caller
        self._policies = policies
        self._levels: dict[str, Classification] = {}
        # The entries it learns are read after the checkpoint its policies are of.
        self._generation = access._generation

    async def learn(self, series_ids: Iterable[str]) -> None:
        if not self._policies.uses_classification:
            return
        for series_id in series_ids:
            if series_id not in self._levels:
                self._levels[series_id] = await self._access.level(series_id)

    def learn_entries(self, entries: Iterable[SeriesEntry]) -> None:
        if not self._policies.uses_classification:
            return
        for entry in entries:
            level = classification_of(entry)
            self._levels[entry.series_id] = level
            self._access.remember(entry.series_id, level, self._generation)

    def allows(self, resource: str, series_id: str) -> bool:
        if self._policies.uses_classification and series_id not in self._levels:
            # Not learnt: a bug, refused rather than decided without the classification.
            raise RuntimeError(f"the classification of {series_id!r} was not looked up")
        level = self._levels.get(series_id)
        return self._access.decide(self._policies, self._caller, resource, level).allowed

    def allows_unclassified(self, resource: str) -> bool:
        return self._access.decide(self._policies, self._caller, resource, None).allowed


HIGHEST_CLASSIFICATION = max(Classification, key=lambda level: level.rank)
"""What a series the catalogue does not know (PolicyAccess.level) and what covers every series
(EVERYTHING) are decided at."""


def classification_of(entry: SeriesEntry) -> Classification:
    """A catalogue entry's classification (the proto-JSON form of its Series); INTERNAL when
    it has none (a series defined before classifications existed)."""
    name = entry.definition.get("classification")
    return (
        _LEVELS.get(name, DEFAULT_CLASSIFICATION)
        if isinstance(name, str)
        else DEFAULT_CLASSIFICATION
    )


_LEVELS = {series_pb2.DataClassification.Name(n): level for n, level in CLASSIFICATIONS.items()}
"""Classifications by their names in proto-JSON ("DATA_CLASSIFICATION_CONFIDENTIAL")."""

"""Calling any RPC of the v1 services with a message or raw bytes, judging the answer, and the
ledger of what was called, what it answered and what the command side accepted.

Methods are taken from the service descriptors, so a new RPC is fuzzed without a change here;
one serializer passes bytes through and encodes messages, so structured and raw requests share
every code path after the strategy.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import grpc
from google.protobuf import message_factory, text_format
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from qis.data.v1 import command_service_pb2, query_service_pb2, topic_service_pb2

C = grpc.StatusCode
ALLOWED: Final = frozenset(
    {
        C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.ALREADY_EXISTS, C.FAILED_PRECONDITION,
        C.PERMISSION_DENIED, C.OUT_OF_RANGE, C.RESOURCE_EXHAUSTED, C.ABORTED, C.UNAVAILABLE,
    }
)  # fmt: skip
# Statuses whose first answer per RPC the summary quotes: allowed, but each has a story.
EXPLAINED: Final = frozenset({C.RESOURCE_EXHAUSTED, C.ABORTED, C.OUT_OF_RANGE})
LIMIT_S: Final = 5.0
# The client waits longer than the limit, so that a slow answer is measured rather than cut.
CALL_TIMEOUT_S: Final = 10.0
# A subscription that passed its checks stays open for good: after this long without the
# server ending it, the client ends it and counts it as open.
SUBSCRIBE_WINDOW_S: Final = 0.1
# A Consume call ends when the client closes its side, which the fuzzer's does after its last
# request: one still open after this long is counted as open, like a subscription.
CONSUME_WINDOW_S: Final = 2.0
STREAM_READ: Final = 3  # messages read from a server stream before the client cancels
OPEN: Final = "OK (open, cut by the client)"
_CODES_BY_NUMBER: Final = {code.value[0]: code for code in C}

COMMAND_SERVICE: Final = command_service_pb2.DESCRIPTOR.services_by_name["CommandService"]
QUERY_SERVICE: Final = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"]
TOPIC_SERVICE: Final = topic_service_pb2.DESCRIPTOR.services_by_name["TopicService"]

Request = Message | bytes
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Rpc:
    method: MethodDescriptor

    @property
    def name(self) -> str:
        return f"{self.method.containing_service.name}.{self.method.name}"

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def is_command(self) -> bool:
        return self.method.containing_service.full_name == COMMAND_SERVICE.full_name

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)


def rpcs(
    services: Iterable[ServiceDescriptor] = (COMMAND_SERVICE, QUERY_SERVICE, TOPIC_SERVICE),
) -> list[Rpc]:
    return [Rpc(m) for service in services for m in service.methods]


def _serialize(request: Request) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


@dataclass(frozen=True)
class Outcome:
    label: str  # the status code's name, or OPEN
    code: grpc.StatusCode
    seconds: float
    details: str = ""
    status: status_pb2.Status | None = None  # the rich status, when the server sent one
    responses: tuple[Message, ...] = ()


def call(
    channel: grpc.Channel, rpc: Rpc, requests: Sequence[Request], metadata: Metadata
) -> Outcome:
    """One call, timed: `requests` are the messages of a request stream, or the one request."""
    m = rpc.method
    decode = rpc.response_class.FromString
    window = {"Subscribe": SUBSCRIBE_WINDOW_S, "Consume": CONSUME_WINDOW_S}.get(
        m.name, CALL_TIMEOUT_S
    )
    responses: list[Message] = []
    start = time.monotonic()
    try:
        if m.client_streaming:
            stream = channel.stream_stream(rpc.path, _serialize, decode)
            responses.extend(stream(iter(requests), metadata=metadata, timeout=window))
        elif m.server_streaming:
            (request,) = requests
            read = channel.unary_stream(rpc.path, _serialize, decode)(
                request, metadata=metadata, timeout=window
            )
            for response in read:
                responses.append(response)
                if len(responses) >= STREAM_READ:  # enough to know it answers; cut it short
                    read.cancel()
                    break
        else:
            (request,) = requests
            unary = channel.unary_unary(rpc.path, _serialize, decode)
            responses.append(unary(request, metadata=metadata, timeout=window))
    except grpc.RpcError as raised:
        seconds = time.monotonic() - start
        error = cast(grpc.Call, raised)  # what grpc raises for a call is both
        code = error.code()
        if code == C.DEADLINE_EXCEEDED and window < CALL_TIMEOUT_S:
            return Outcome(OPEN, C.OK, seconds, responses=tuple(responses))
        # A request stream can fail after some chunks were answered (and committed).
        details = error.details() or ""
        return Outcome(code.name, code, seconds, details, _rich(error), tuple(responses))
    return Outcome(C.OK.name, C.OK, time.monotonic() - start, responses=tuple(responses))


def _rich(error: grpc.Call) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except ValueError:  # a rich status that contradicts the call's own code: report it so
        return status_pb2.Status(code=-1, message="rich status contradicts the call's code")
    return status


def has_detail(status: status_pb2.Status | None, detail: type[Message]) -> bool:
    return status is not None and any(d.Is(detail.DESCRIPTOR) for d in status.details)


def error_id(status: status_pb2.Status | None) -> str | None:
    """The id an INTERNAL answer names; the server logged the traceback with it."""
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and "error_id" in info.metadata:
            return str(info.metadata["error_id"])
    return None


# --- judging ----------------------------------------------------------------------------------


def problems(rpc: Rpc, outcome: Outcome, chunks: int) -> list[str]:
    """What is wrong with an answer; empty when it is a clear one in time. `chunks`: how many
    requests a client stream sent (BulkIngest answers each with its own outcome)."""
    found: list[str] = []
    if outcome.code not in ALLOWED:
        found.append(f"status {outcome.label}: {outcome.details}")
    if outcome.code == C.RESOURCE_EXHAUSTED and "metadata size exceeds" in outcome.details:
        # The client's own status: the server's answer did not fit in the trailers it may send.
        found.append(f"the answer outgrew the client's metadata limit: {outcome.details}")
    if outcome.seconds >= LIMIT_S:
        found.append(f"took {outcome.seconds:.2f} s (limit {LIMIT_S} s)")
    if outcome.code == C.UNAVAILABLE and not has_detail(
        outcome.status, error_details_pb2.RetryInfo
    ):
        found.append("UNAVAILABLE without RetryInfo")
    if rpc.method.client_streaming and rpc.is_command and outcome.code == C.OK:
        if len(outcome.responses) != chunks:
            found.append(f"{chunks} chunks answered by {len(outcome.responses)} responses")
        for response in outcome.responses:
            assert isinstance(response, command_service_pb2.BulkIngestResponse)
            if response.WhichOneof("outcome") != "error":
                continue
            chunk_code = chunk_status(response)
            if chunk_code not in ALLOWED - {C.OK}:
                found.append(f"chunk {response.command_id!r}: status {response.error}")
            if chunk_code == C.UNAVAILABLE and not has_detail(
                response.error, error_details_pb2.RetryInfo
            ):
                found.append(f"chunk {response.command_id!r}: UNAVAILABLE without RetryInfo")
    return found


def chunk_status(response: command_service_pb2.BulkIngestResponse) -> grpc.StatusCode | None:
    return _CODES_BY_NUMBER.get(response.error.code)


# --- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """A command the service answered OK, as the event log must show it."""

    rpc: str
    command_id: str
    user: str
    position: int
    duplicate: bool


@dataclass
class Ledger:
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted: list[Accepted] = field(default_factory=list)
    slowest: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # printed after the table
    # The first answer of each rarer status, for the summary: why it was answered.
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    # Which fields INVALID_ARGUMENT answers named (indices folded), per RPC: the checks the
    # generated requests reached.
    refused_fields: dict[str, Counter[str]] = field(default_factory=dict)

    def record(
        self,
        rpc: Rpc,
        kind: str,
        requests: Sequence[Request],
        metadata: Metadata,
        outcome: Outcome,
    ) -> None:
        row = f"{rpc.name}{kind}"
        self.calls[(row, outcome.label)] += 1
        self.slowest[row] = max(self.slowest.get(row, 0.0), outcome.seconds)
        if outcome.code in EXPLAINED:
            self.examples.setdefault((row, outcome.label), outcome.details[:160])
        statuses = [outcome.status] if outcome.status is not None else []
        if rpc.method.client_streaming:
            statuses += [
                r.error
                for r in outcome.responses
                if isinstance(r, command_service_pb2.BulkIngestResponse) and r.HasField("error")
            ]
        for status in statuses:
            self.refused_fields.setdefault(row, Counter()).update(violated_fields(status))
        if not rpc.is_command:
            return
        user = next(v for k, v in metadata if k == "x-qis-user")
        if rpc.method.client_streaming:  # whatever the call ended with, as chunks were answered
            for response in outcome.responses:
                assert isinstance(response, command_service_pb2.BulkIngestResponse)
                which = response.WhichOneof("outcome")
                code = chunk_status(response)
                label = "OK" if which == "result" else getattr(code, "name", str(code))
                self.calls[(f"{row} (chunks)", label)] += 1
                if which == "result":
                    self._accept(rpc, response.command_id, user, response.result)
        elif outcome.code == C.OK:
            self._accept(rpc, _command_id(rpc, requests[0]), user, outcome.responses[0])

    def _accept(self, rpc: Rpc, command_id: str, user: str, response: Any) -> None:
        self.accepted.append(
            Accepted(rpc.name, command_id, user, response.commit_position, response.duplicate)
        )

    def table(self) -> str:
        rows = sorted({row for row, _ in self.calls})
        labels = sorted({label for _, label in self.calls})
        width = max([len(r) for r in rows] + [10])
        head = f"{'rpc':<{width}} {'calls':>6} {'max s':>6}  statuses"
        lines = [head, "-" * len(head)]
        for row in rows:
            counts = {label: self.calls[(row, label)] for label in labels}
            total = sum(counts.values())
            statuses = ", ".join(f"{label} {n}" for label, n in counts.items() if n)
            slowest = self.slowest.get(row)
            lines.append(
                f"{row:<{width}} {total:>6} {'' if slowest is None else f'{slowest:.2f}':>6}"
                f"  {statuses}"
            )
        commands = [a for a in self.accepted if not a.duplicate]
        lines.append(
            f"accepted commands: {len(commands)} new, {len(self.accepted) - len(commands)}"
            " answered as duplicates"
        )
        lines += [f"first {label} of {row}: {why}" for (row, label), why in self.examples.items()]
        for row, fields in sorted(self.refused_fields.items()):
            named = ", ".join(name for name, _ in fields.most_common(MAX_LISTED_FIELDS))
            more = len(fields) - MAX_LISTED_FIELDS
            lines.append(f"fields refused by {row}: {named}{f' (+{more})' if more > 0 else ''}")
        return "\n".join(lines + self.notes)


MAX_LISTED_FIELDS: Final = 24
_INDEX: Final = re.compile(r"\[\d+\]")


def violated_fields(status: status_pb2.Status) -> list[str]:
    """The field paths of a status' BadRequest violations, indices folded ("points[i].value")."""
    found: list[str] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found += [_INDEX.sub("[i]", v.field) for v in bad_request.field_violations]
    return found


def _command_id(rpc: Rpc, request: Request) -> str:
    """The command id the server read: raw bytes that it accepted decode as the request."""
    if isinstance(request, bytes):
        try:
            request = rpc.request_class.FromString(request)
        except DecodeError:
            return "(undecodable)"
    command_id: str = getattr(request, "command_id")  # noqa: B009 - every command has one
    return command_id


LEDGER: Final = Ledger()
"""One per test session: the fuzz tests fill it, the terminal summary prints it."""


# --- reporting --------------------------------------------------------------------------------


def describe(requests: Sequence[Request], limit: int = 6_000) -> str:
    """Requests in text format (bytes as hex), long strings cut so that a report stays
    readable."""
    if len(requests) > 1:
        return "\n".join(f"--- chunk {i}\n{describe([r], limit)}" for i, r in enumerate(requests))
    (request,) = requests
    if isinstance(request, bytes):
        return f"raw bytes ({len(request)}): {request[:512].hex()}"
    lines = text_format.MessageToString(request, as_utf8=True).splitlines()
    text = "\n".join(
        line if len(line) <= 300 else f"{line[:300]}… ({len(line)} chars)" for line in lines
    )
    return text if len(text) <= limit else f"{text[:limit]}\n… ({len(text)} chars)"


def server_trace(logs: Sequence[Path], outcome: Outcome) -> str:
    """The server's log entry for an INTERNAL answer (found by its error id), with traceback."""
    wanted = error_id(outcome.status)
    if wanted is None:
        return "(no error id in the answer)"
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if wanted in line and line.startswith("{"):
                entry = json.loads(line)
                return f"{path.name}: {entry.get('msg')}\n{entry.get('exc', '(no traceback)')}"
    return f"(error id {wanted} not found in the logs)"

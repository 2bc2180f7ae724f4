"""What the CLI tells a person when something goes wrong: a sentence and an exit code, and the
server's google.rpc details in readable form, never a traceback.

Every command exits with one of EXIT_CODES, so that a script can tell "fix your command" from
"it does not exist" from "try again later" without reading the message.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_DENIED = 5
EXIT_INTERRUPTED = 130  # the shell convention for "stopped by Ctrl-C" (128 + SIGINT)

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_FAILED, "failed, or partly: the service refused the command, or some rows were rejected"),
    (EXIT_USAGE, "usage: a wrong option, an unreadable or mis-shaped file, a port in use"),
    (EXIT_NOT_FOUND, "not found: no such series, source or point"),
    (EXIT_UNAVAILABLE, "unavailable: service unreachable, busy or behind; run it again later"),
    (EXIT_DENIED, "denied: no identity (--token or --user), or no permission for this"),
    (EXIT_INTERRUPTED, "interrupted by Ctrl-C"),
)
"""The one exit-code convention of every `qis` command, shown by `qis --help` and docs/cli.md."""

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_EXIT_OF_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_FAILED,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_FAILED,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_FAILED,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_UNAVAILABLE,
    grpc.StatusCode.ABORTED: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
}
_EXIT_OF_CODE = {code.value[0]: exit_code for code, exit_code in _EXIT_OF_STATUS.items()}
# ABORTED (exit 4, like every ABORTED: nothing was stored, running the command again is safe)
# because the series moved on since `qis evolve-series` read it. Running it again reads the
# new definition and makes the change from there, which is what the person meant, once they
# have seen what the other change was.
SCHEMA_VERSION_MISMATCH = "SCHEMA_VERSION_MISMATCH"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"


class CliError(Exception):
    """Printed as its message alone; by default a usage problem (exit code 2)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    description: str


def code_name(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))


def exit_code_of(status: status_pb2.Status) -> int:
    """INTERNAL, UNKNOWN and the like are failures too: nothing a person can fix by retrying
    or by changing the command, so they land with the refusals; so does a request too large,
    refused alike every time."""
    if _too_large(status):
        return EXIT_FAILED
    return _EXIT_OF_CODE.get(status.code, EXIT_FAILED)


def _too_large(status: status_pb2.Status) -> bool:
    """A message over a size limit: refused by the service (REQUEST_TOO_LARGE), or by gRPC
    itself (no details, its own text; the service's refusals all carry an ErrorInfo)."""
    if status.code != grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]:
        return False
    if status.details:
        return reason_of(status) == REQUEST_TOO_LARGE
    return "larger than max" in status.message


def violations_of(status: status_pb2.Status) -> list[Violation]:
    found: list[Violation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(Violation(v.field, v.description) for v in bad.field_violations)
    return found


def reason_of(status: status_pb2.Status) -> str:
    """The google.rpc.ErrorInfo reason of a status, e.g. "COMMAND_ID_REUSED"; "" without one."""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason: str = info.reason
            return reason
    return ""


def describe_status(status: status_pb2.Status) -> str:
    """'CODE: message', or 'CODE' and one indented line per field violation: the server's
    message only repeats the first violation then."""
    violations = violations_of(status)
    if violations:
        lines = [code_name(status.code)]
        lines.extend(f"  {v.field}: {v.description}" for v in violations)
        return "\n".join(lines)
    text = f"{code_name(status.code)}: {status.message}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            if info.description:
                text += f" (field {info.description})"
    return text


def status_of_rpc_error(error: grpc.RpcError) -> status_pb2.Status:
    """The rich status when the server sent one (grpc-status-details-bin), else code + text."""
    if not isinstance(error, grpc.Call):
        return status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0], message=str(error))
    rich: status_pb2.Status | None = rpc_status.from_call(error)
    if rich is not None:
        return rich
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


def hint_for(status: status_pb2.Status) -> str:
    """What a person can do about a status, for the codes where the fix is on their side."""
    if reason_of(status) == SCHEMA_VERSION_MISMATCH:
        return (
            "\n  the series changed since its definition was read, and nothing was changed;"
            " check what changed, then run the command again to make this change from the"
            " current definition"
        )
    if status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]:
        return (
            "\n  pass --token TOKEN or set QIS_TOKEN (a server in jwt mode);"
            " --user NAME or QIS_USER in development mode"
        )
    if _too_large(status):
        return "\n  a message over a size limit: send fewer points per request (--chunk-size)"
    if exit_code_of(status) == EXIT_UNAVAILABLE:
        return "\n  temporary: run the same command again later"
    return ""


def rpc_failure(error: grpc.RpcError) -> CliError:
    """A failed call as a CliError whose exit code follows EXIT_CODES."""
    status = status_of_rpc_error(error)
    return CliError(describe_status(status) + hint_for(status), exit_code_of(status))

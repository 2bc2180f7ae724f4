"""What holds for every `qis` command: one exit-code convention, shown in `qis --help` and in
docs/cli.md, and a help text for every option."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from qis_cli.errors import EXIT_CODES, exit_code_of
from qis_cli.main import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 1),
        (grpc.StatusCode.ALREADY_EXISTS, 1),
        (grpc.StatusCode.FAILED_PRECONDITION, 1),
        (grpc.StatusCode.INTERNAL, 1),
        (grpc.StatusCode.UNKNOWN, 1),
        (grpc.StatusCode.NOT_FOUND, 3),
        (grpc.StatusCode.UNAVAILABLE, 4),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 4),
        (grpc.StatusCode.ABORTED, 4),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 4),
        (grpc.StatusCode.UNAUTHENTICATED, 5),
        (grpc.StatusCode.PERMISSION_DENIED, 5),
    ],
)
def test_each_status_has_its_exit_code(code: grpc.StatusCode, exit_code: int) -> None:
    assert exit_code_of(status_pb2.Status(code=code.value[0])) == exit_code


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES:
        assert f"{code:>3}  {meaning}" in out


def test_docs_list_the_same_exit_codes() -> None:
    text = DOCS.read_text()
    for code, meaning in EXIT_CODES:
        assert f"| {code} | {meaning} |" in text


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_option_has_help() -> None:
    commands = _subcommands(build_parser())
    assert "evolve-series" in commands
    for name, command in commands.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"qis {name} {'/'.join(action.option_strings) or action.dest}"


def _every_command(
    parser: argparse.ArgumentParser, prefix: str = "qis"
) -> dict[str, argparse.ArgumentParser]:
    """Every command and nested command ("qis feed coingecko"), by its full name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                found[f"{prefix} {name}"] = command
                found.update(_every_command(command, f"{prefix} {name}"))
    return found


def test_docs_mention_every_command_and_option() -> None:
    text = DOCS.read_text()
    commands = _every_command(build_parser())
    assert "qis feed coingecko" in commands  # nested commands are checked too
    for name, command in commands.items():
        assert name in text
        for action in command._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in text, f"{name} {flag}"


def test_every_command_that_calls_a_service_takes_a_bearer_token() -> None:
    """--token is what a server in jwt mode accepts; it replaces --user on the wire."""
    from qis_cli.connection import identity

    args = build_parser().parse_args(["query", "SPX", "--token", "eyJ.a.b", "--user", "alice"])
    assert identity(args.user, args.token) == (("authorization", "Bearer eyJ.a.b"),)

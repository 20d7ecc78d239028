"""The `mesh` error boundary: each known failure is one line on stderr and the right exit code;
anything else keeps its traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from mesh.cli import MeshGroup, cli
from mesh.cli.errors import RUNTIME_EXIT, USAGE_EXIT, CommandFailed, as_failure, one_line
from mesh.config import ConfigError, MissingApiKey
from mesh.contract.errors import Code, FieldViolation, InvalidRequest, MeshError
from mesh.contract.node_token import TokenUnavailable
from mesh.telemetry.span_store import TraceNotFound
from nodes.assets import UnknownModel
from nodes.bridges.prices import PriceTableError


def _mesh(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, prog_name="mesh")


def _one_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mesh: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ConfigError("mesh.yaml:3: listen: bad"), USAGE_EXIT, "mesh.yaml:3: listen: bad"),
        (TokenUnavailable("node n: T is not set"), USAGE_EXIT, "node n: T is not set"),
        (MissingApiKey("variable K is not set"), USAGE_EXIT, "variable K is not set"),
        (PriceTableError("prices.yaml: not YAML"), USAGE_EXIT, "prices.yaml: not YAML"),
        (UnknownModel("unknown model 'x'"), USAGE_EXIT, "unknown model 'x'"),
        (
            MeshError("ledger down", code=Code.UNAVAILABLE, reason="LEDGER_UNAVAILABLE"),
            RUNTIME_EXIT,
            "UNAVAILABLE (LEDGER_UNAVAILABLE): ledger down",
        ),
        (
            InvalidRequest(
                "bad request",
                violations=[FieldViolation("sampling.temperature", "must be >= 0")],
                metadata={"b": "2", "a": "1"},
                retry_after_s=1.5,
            ),
            USAGE_EXIT,
            "INVALID_ARGUMENT (INVALID_REQUEST): bad request; sampling.temperature: must be >= 0; "
            "a=1 b=2; retry after 1.5s",
        ),
        (FileNotFoundError(2, "No such file", "/x/y"), RUNTIME_EXIT, "/x/y: No such file"),
        (TraceNotFound("no trace carries 'r'"), RUNTIME_EXIT, "no trace carries 'r'"),
    ],
)
def test_known_failures_become_one_line_and_an_exit_code(
    error: Exception, code: int, line: str
) -> None:
    failure = as_failure(error)
    assert isinstance(failure, CommandFailed)
    assert (failure.exit_code, failure.format_message()) == (code, line)


@pytest.mark.parametrize(
    "error", [RuntimeError("bug"), ValueError("bug"), KeyError("k"), BrokenPipeError()]
)
def test_anything_else_is_not_a_known_failure(error: Exception) -> None:
    assert as_failure(error) is None


def test_a_message_over_several_lines_is_shown_on_one() -> None:
    assert one_line("invalid config:\n  a:1: x: unknown key\n  a:2: y: bad\n") == (
        "invalid config: a:1: x: unknown key; a:2: y: bad"
    )
    assert one_line("first\nsecond") == "first; second"


# --- through the real commands -----------------------------------------------------------
def test_a_bad_config_file_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "mesh.yaml"
    bad.write_text("router:\n  listen: 127.0.0.1:1\nnodes:\n  - id: x\n    engnie: fake\n")
    result = _mesh("up", "--config", str(bad))
    assert result.exit_code == USAGE_EXIT
    assert _one_line(result) == f"mesh: invalid config: {bad}:5: nodes[0].engnie: unknown key"


def test_an_invalid_policy_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("guards:\n  - name: x\n    use: nope\n")
    result = _mesh("policy", "lint", str(bad))
    assert result.exit_code == USAGE_EXIT
    assert "invalid policy at guards[0].use: unknown guard 'nope'" in _one_line(result)


def test_an_unknown_model_is_exit_2() -> None:
    result = _mesh("models", "path", "no-such-model")
    assert result.exit_code == USAGE_EXIT
    assert _one_line(result).startswith("mesh: unknown model 'no-such-model'; known: ")


def test_an_unreachable_router_is_exit_1() -> None:
    result = _mesh("nodes", "--router", f"127.0.0.1:{_closed_port()}")
    assert result.exit_code == RUNTIME_EXIT
    assert _one_line(result).startswith("mesh: UNAVAILABLE: ")


@pytest.mark.parametrize(
    ("scheme", "code", "start"),
    [  # a URL no driver serves must change (2); a database that is down may come back (1)
        ("postgresql", USAGE_EXIT, "mesh: FAILED_PRECONDITION (INVALID_LEDGER_URL): "),
        ("postgresql+asyncpg", RUNTIME_EXIT, "mesh: UNAVAILABLE (LEDGER_UNAVAILABLE): "),
    ],
)
def test_an_unusable_ledger_is_one_line_without_its_password(
    tmp_path: Path, scheme: str, code: int, start: str
) -> None:
    config = tmp_path / "mesh.yaml"
    url = f"{scheme}://u:hunter2@127.0.0.1:{_closed_port()}/l"
    config.write_text(f"router:\n  ledger: {{url: '{url}'}}\n")
    result = _mesh("costs", "--config", str(config))
    assert result.exit_code == code
    line = _one_line(result)
    assert line.startswith(start) and "hunter2" not in line


def test_a_click_exception_from_a_command_takes_the_same_form() -> None:
    result = _mesh("keys", "hash", stdin="\n")
    assert result.exit_code == RUNTIME_EXIT
    assert _one_line(result) == "mesh: no key given on stdin"


def test_usage_errors_keep_clicks_message() -> None:
    result = _mesh("costs", "--since", "yesterday-ish")
    assert result.exit_code == USAGE_EXIT
    assert "Invalid value for '--since'" in result.stderr and "Usage: mesh costs" in result.stderr


# --- bugs keep their traceback -----------------------------------------------------------
def _group_raising(error: Exception) -> click.Group:
    group = MeshGroup("mesh")

    @group.command()
    def fail() -> None:
        raise error

    return group


def test_a_bug_keeps_its_traceback() -> None:
    result = CliRunner().invoke(_group_raising(ValueError("a bug")), ["fail"])
    assert isinstance(result.exception, ValueError) and "mesh:" not in result.output


def test_mesh_debug_keeps_the_traceback_of_known_failures_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = _group_raising(ConfigError("bad"))
    assert CliRunner().invoke(group, ["fail"]).stderr == "mesh: bad\n"
    monkeypatch.setenv("MESH_DEBUG", "1")
    assert isinstance(CliRunner().invoke(group, ["fail"]).exception, ConfigError)

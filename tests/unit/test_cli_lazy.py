"""`mesh --help` lists every command without importing it; the listing matches the commands."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from mesh.cli import COMMANDS, cli
from mesh.cli.lazy_group import LazyCommand, LazyGroup

# What the top-level help must not import (each costs 0.1-3 s of start-up).
HEAVY = (
    "grpc",
    "opentelemetry",
    "sqlalchemy",
    "torch",
    "transformers",
    "pydantic",
    "google.protobuf",
    "mesh.config",
    "mesh.telemetry",
    "mesh.router",
    "mesh.client",
    "guards",
    "nodes",
)
# A group's help imports the group's own module, and nothing of the runtime below it.
RUNTIME = (
    "grpc",
    "opentelemetry",
    "sqlalchemy",
    "torch",
    "transformers",
    "pydantic",
    "mesh.config",
)

PROBE = """
import json, sys
from mesh.cli import main
sys.argv = ["mesh", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Usage: mesh" in out.stdout
    return set(json.loads(out.stderr.strip().splitlines()[-1]))


def _loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_mesh_help_imports_no_command() -> None:
    modules = _modules_after("--help")
    assert _loaded(modules, HEAVY) == []
    assert "mesh.cli" in modules  # the probe did run the real entry point


@pytest.mark.parametrize(
    "args", [["policy", "--help"], ["keys", "--help"], ["models", "--help"], ["certs", "--help"]]
)
def test_group_help_imports_only_its_own_module(args: list[str]) -> None:
    assert _loaded(_modules_after(*args), RUNTIME) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_help_is_the_first_paragraph_of_the_commands_docstring(name: str) -> None:
    command = COMMANDS[name].load()
    assert command.help is not None
    assert COMMANDS[name].short_help == " ".join(command.help.partition("\n\n")[0].split())


def test_the_lazy_listing_is_what_click_lists_with_every_command_imported() -> None:
    lazy = LazyGroup("mesh", params=cli.params, help=cli.help, lazy_commands=COMMANDS)
    eager = click.Group(
        "mesh",
        params=cli.params,
        help=cli.help,
        commands={name: entry.load() for name, entry in COMMANDS.items()},
    )
    runner = CliRunner()
    shown = runner.invoke(lazy, ["--help"], prog_name="mesh", terminal_width=80)
    assert shown.exit_code == 0, shown.output
    assert lazy.commands == {}  # nothing was imported to list them
    assert (
        shown.output == runner.invoke(eager, ["--help"], prog_name="mesh", terminal_width=80).output
    )


@click.command()
def hello() -> None:
    """Say hello."""
    click.echo("hello")


NOT_A_COMMAND = 42


def test_a_lazy_command_is_imported_when_it_runs_and_kept() -> None:
    group = LazyGroup(
        "g",
        lazy_commands={
            "hello": LazyCommand(f"{__name__}:hello", "Say hello."),
            "broken": LazyCommand(f"{__name__}:NOT_A_COMMAND", "Not one."),
        },
    )
    result = CliRunner().invoke(group, ["hello"])
    assert result.exit_code == 0 and result.output == "hello\n"
    assert group.commands == {"hello": hello}
    unknown = CliRunner().invoke(group, ["nope"])
    assert unknown.exit_code == 2 and "No such command 'nope'" in unknown.output
    with pytest.raises(TypeError, match="NOT_A_COMMAND is not a click command"):
        CliRunner().invoke(group, ["broken"], catch_exceptions=False)

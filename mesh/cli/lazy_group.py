"""A click group whose subcommands are named by import path and imported only when needed.

Click's documented LazyGroup pattern, plus one step: the group's own help lists each command
with a short help registered beside its import path, so `mesh --help` imports none of them
(grpc, OpenTelemetry, SQLAlchemy, torch and pydantic configs are 1-4 s of imports). A command
is imported when it runs or shows its own help; tests check every registered short help
against the command's docstring, so the listing cannot drift from the commands.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a subcommand lives ("package.module:attribute") and its one-line help."""

    import_path: str
    short_help: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.import_path.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.import_path} is not a click command")
        return command


class LazyGroup(click.Group):
    """A group of `LazyCommand`s (and ordinary commands, if any are added)."""

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, LazyCommand] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self.lazy_commands[cmd_name].load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command listing, with not-yet-imported commands described by their entry."""
        described = [(name, self._described(ctx, name)) for name in self.list_commands(ctx)]
        shown = [(name, cmd) for name, cmd in described if cmd is not None and not cmd.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)  # as click does
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in shown])

    def _described(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands or name not in self.lazy_commands:
            return super().get_command(ctx, name)
        # A stand-in carrying the registered help: click shortens it exactly as a docstring.
        return click.Command(name, help=self.lazy_commands[name].short_help)

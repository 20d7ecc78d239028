"""The Guard protocol: one dataclass input per hook, so inputs can grow without breaking guards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from guards.verdict import Verdict
from mesh.config import DEFAULT_TENANT


@dataclass(frozen=True)
class InputCheck:
    """Input for `Guard.check_input`: the caller's text (system turns excluded) and context."""

    text: str
    tenant: str = DEFAULT_TENANT
    request_id: str = ""
    system_prompt: str = ""


@dataclass(frozen=True)
class OutputChunkCheck:
    """Input for `Guard.check_output_chunk`: the hold-back window (held tail plus new chunk)."""

    text: str
    tenant: str = DEFAULT_TENANT
    request_id: str = ""
    system_prompt: str = ""
    offset: int = 0


@dataclass(frozen=True)
class OutputFinalCheck:
    """Input for `Guard.check_output_final`: the whole response text."""

    text: str
    tenant: str = DEFAULT_TENANT
    request_id: str = ""
    system_prompt: str = ""


@runtime_checkable
class Guard(Protocol):
    """A check on text. Hooks are synchronous: the chain decides whether to run them inline or in
    a thread (`cpu_heavy`), so a slow guard never blocks the event loop."""

    cpu_heavy: bool

    def check_input(self, check: InputCheck) -> Verdict: ...

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict: ...

    def check_output_final(self, check: OutputFinalCheck) -> Verdict: ...

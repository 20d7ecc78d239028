"""The Guard protocol: one dataclass input per hook, so inputs can grow without breaking guards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from guards.verdict import Verdict
from mesh.config import DEFAULT_TENANT


class Turn(NamedTuple):
    """Where one conversation turn lies in an InputCheck's text."""

    role: str  # "system", "user" or "assistant"
    start: int
    end: int


@dataclass(frozen=True)
class InputCheck:
    """Input for `Guard.check_input`: the conversation as one text, and its context.

    `turns` says which role wrote which part (empty: one untyped text, e.g. `mesh policy test`).
    A guard reads only the roles its spec names: `view` blanks the other turns, keeping every
    offset, so findings still point into `text` and redaction needs no mapping.
    """

    text: str
    tenant: str = DEFAULT_TENANT
    request_id: str = ""
    system_prompt: str = ""
    turns: tuple[Turn, ...] = ()
    _views: dict[frozenset[str], InputCheck] = field(
        default_factory=dict, compare=False, repr=False
    )

    def view(self, roles: frozenset[str]) -> InputCheck:
        """This check as seen by a guard reading only `roles` (self when nothing is hidden);
        one view per role set, shared by every guard of the chain."""
        if not self.turns:
            return self
        seen = self._views.get(roles)
        if seen is None:
            hidden = [t for t in self.turns if t.role not in roles]
            seen = self
            if hidden:
                parts, at = [], 0
                for turn in hidden:
                    parts += [self.text[at : turn.start], " " * (turn.end - turn.start)]
                    at = turn.end
                parts.append(self.text[at:])
                text = "".join(parts)
                seen = InputCheck(
                    text, self.tenant, self.request_id, self.system_prompt, self.turns
                )
            self._views[roles] = seen
        return seen


@dataclass(frozen=True)
class OutputChunkCheck:
    """Input for `Guard.check_output_chunk` (and `StreamHoldback.holdback`): the text of a
    stream not yet released (held tail plus new chunk); `offset` characters came before it."""

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


# Default deadlines of one guard call (a spec's `timeout_ms` overrides): inline guards are never
# cut short (their overrun is logged), so theirs only marks a slow call; a guard off the event
# loop (a thread, or the validator sandbox) is cut at its own.
INLINE_TIMEOUT_MS = 200
CPU_HEAVY_TIMEOUT_MS = 2000


@runtime_checkable
class Guard(Protocol):
    """A check on text. Hooks are synchronous: the chain decides whether to run them inline or in
    a thread (`cpu_heavy`), so a slow guard never blocks the event loop."""

    cpu_heavy: bool

    def check_input(self, check: InputCheck) -> Verdict: ...

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict: ...

    def check_output_final(self, check: OutputFinalCheck) -> Verdict: ...


@runtime_checkable
class StreamHoldback(Protocol):
    """Optional on a Guard: how many trailing characters of a stream's unreleased text it could
    still turn into a finding once more text arrives. 0 releases everything; None means it
    cannot say, and the stream holds the policy's `hold_back_chars` for it (as for a guard
    without this method, such as a guardrails-ai validator)."""

    def holdback(self, check: OutputChunkCheck) -> int | None: ...

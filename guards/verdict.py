"""What a guard decides: the action, the findings with spans, and (for redactions) the new text."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class Action(enum.Enum):
    """Decision of one guard; the order of the members is their severity."""

    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"


class Mode(enum.Enum):
    """Whether a guard's action takes effect (enforce) or is only recorded (monitor)."""

    ENFORCE = "enforce"
    MONITOR = "monitor"


class Stage(enum.Enum):
    """Where in a request's life a guard runs."""

    INPUT = "input"
    OUTPUT = "output"


# The finding type of a guard that could not decide (GuardOutcome.error_type says why).
GUARD_ERROR = "GUARD_ERROR"


@dataclass(frozen=True)
class Finding:
    """One thing a detector found: a type and a character span in the checked text."""

    type: str
    start: int
    end: int
    score: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """A guard's answer. `text` is the rewritten text for REDACT, otherwise None."""

    action: Action
    findings: tuple[Finding, ...] = ()
    text: str | None = None

    @staticmethod
    def allow() -> Verdict:
        return ALLOWED

    @staticmethod
    def block(findings: Iterable[Finding]) -> Verdict:
        return Verdict(Action.BLOCK, tuple(findings))

    @staticmethod
    def flag(findings: Iterable[Finding]) -> Verdict:
        return Verdict(Action.FLAG, tuple(findings))

    @staticmethod
    def redact(text: str, findings: Iterable[Finding]) -> Verdict:
        found = tuple(findings)
        return Verdict(Action.REDACT, found, mask_spans(text, found))

    @staticmethod
    def decide(action: Action, text: str, findings: Sequence[Finding]) -> Verdict:
        """The verdict a guard configured with `action` gives for these findings."""
        if not findings or action is Action.ALLOW:
            return ALLOWED
        if action is Action.REDACT:
            return Verdict.redact(text, findings)
        return Verdict(action, tuple(findings))


ALLOWED = Verdict(Action.ALLOW)  # the one allow-with-nothing-found verdict; compare with `is`


def merge_spans(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping spans in text order; on overlap the earlier-listed finding names the span."""
    merged: list[Finding] = []
    for f in sorted(
        (f for f in findings if f.end > f.start), key=lambda f: (f.start, -(f.end - f.start))
    ):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            if f.end > last.end:
                merged[-1] = Finding(last.type, last.start, f.end, max(last.score, f.score))
            continue
        merged.append(f)
    return merged


def mask_spans(text: str, findings: Iterable[Finding]) -> str:
    """Replace every span with `[TYPE]`; the placeholder carries no part of the value."""
    out: list[str] = []
    pos = 0
    for f in merge_spans(findings):
        start, end = max(f.start, pos), min(f.end, len(text))
        if start >= end:
            continue
        out.append(text[pos:start])
        out.append(f"[{f.type}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)


@dataclass(frozen=True)
class GuardOutcome:
    """One guard's verdict in context: which guard, at what stage, enforced or monitored."""

    guard: str
    stage: Stage
    mode: Mode
    verdict: Verdict
    error: str = ""
    findings_offset: int = 0
    error_type: str = ""

    @property
    def enforced(self) -> bool:
        return self.mode is Mode.ENFORCE


@dataclass(frozen=True)
class ChainResult:
    """The combined decision of a chain on one text."""

    action: Action
    text: str
    outcomes: tuple[GuardOutcome, ...] = ()
    policy_version: str = ""
    redactions: tuple[Finding, ...] = field(default=())

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    def non_allow(self) -> list[GuardOutcome]:
        """Outcomes worth auditing: every non-allow verdict, monitored ones included."""
        return [o for o in self.outcomes if o.verdict.action is not Action.ALLOW]

"""Guards for streamed output: a hold-back window so findings split over chunks are still caught.

Only text that can no longer be part of a finding leaves: the last `hold_back` characters are
held, and so is any redaction that reaches into them. A secret no longer than the window is
therefore always seen whole before any of it is released.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guards.chain import GuardChain
from guards.hooks import OutputChunkCheck, OutputFinalCheck
from guards.verdict import (
    Action,
    ChainResult,
    Finding,
    GuardOutcome,
    Verdict,
    mask_spans,
    merge_spans,
)
from mesh.config import DEFAULT_TENANT


@dataclass(frozen=True)
class StreamStep:
    """What the caller may send now, and whether the stream must end as guard-blocked."""

    text: str
    blocked: bool = False


@dataclass
class _Aggregate:
    outcome: GuardOutcome
    findings: dict[tuple[str, int, int], Finding] = field(default_factory=dict)


_SEVERITY = {a: i for i, a in enumerate(Action)}


class StreamGuard:
    """Feed chunks with `push`, end with `finish`; `outcomes` sums up each guard's stream."""

    def __init__(
        self,
        chain: GuardChain,
        hold_back: int,
        *,
        tenant: str = DEFAULT_TENANT,
        request_id: str = "",
        system_prompt: str = "",
    ) -> None:
        self.chain = chain
        self.hold_back = hold_back
        self.tenant = tenant
        self.request_id = request_id
        self.system_prompt = system_prompt
        self._buffer = ""
        self._consumed = 0  # raw characters already released (before masking)
        self._released: list[str] = []
        self._aggregates: dict[str, _Aggregate] = {}
        self.blocked = False

    async def push(self, chunk: str) -> StreamStep:
        if self.blocked:
            return StreamStep("", True)
        self._buffer += chunk
        return await self._step(final=False)

    async def finish(self) -> StreamStep:
        """Release what is held, then run the whole-text checks on everything released."""
        if self.blocked:
            return StreamStep("", True)
        step = await self._step(final=True)
        if step.blocked:
            return step
        whole = "".join(self._released)
        result = await self.chain.run(
            OutputFinalCheck(whole, self.tenant, self.request_id, self.system_prompt)
        )
        self._record(result, 0)
        if result.blocked:
            self.blocked = True
            return StreamStep(step.text, True)
        return step

    async def _step(self, *, final: bool) -> StreamStep:
        if not self._buffer:
            return StreamStep("")
        result = await self.chain.run(
            OutputChunkCheck(
                self._buffer, self.tenant, self.request_id, self.system_prompt, self._consumed
            )
        )
        self._record(result, self._consumed)
        if result.blocked:
            self.blocked = True
            self._buffer = ""
            return StreamStep("", True)
        cut = len(self._buffer) if final else max(0, len(self._buffer) - self.hold_back)
        spans = merge_spans(result.redactions)
        for span in reversed(spans):
            if span.start < cut < span.end:
                cut = span.start
        released = mask_spans(self._buffer[:cut], [s for s in spans if s.end <= cut])
        self._buffer = self._buffer[cut:]
        self._consumed += cut
        self._released.append(released)
        return StreamStep(released)

    def _record(self, result: ChainResult, offset: int) -> None:
        for outcome in result.outcomes:
            agg = self._aggregates.get(outcome.guard)
            if agg is None:
                agg = self._aggregates[outcome.guard] = _Aggregate(outcome)
            elif _SEVERITY[outcome.verdict.action] > _SEVERITY[agg.outcome.verdict.action]:
                agg.outcome = outcome
            for f in outcome.verdict.findings:
                shifted = Finding(f.type, f.start + offset, f.end + offset, f.score)
                agg.findings[(f.type, shifted.start, shifted.end)] = shifted

    @property
    def released_text(self) -> str:
        return "".join(self._released)

    @property
    def outcomes(self) -> list[GuardOutcome]:
        """One outcome per guard: its most severe action over the stream, all its findings."""
        out = []
        for agg in self._aggregates.values():
            o = agg.outcome
            verdict = Verdict(
                o.verdict.action,
                tuple(agg.findings.values()) if o.verdict.action is not Action.ALLOW else (),
            )
            out.append(GuardOutcome(o.guard, o.stage, o.mode, verdict, o.error))
        return out

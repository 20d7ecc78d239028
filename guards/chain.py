"""Runs a policy's guards on one text and combines their verdicts into one decision.

Guards run concurrently: fast ones inline (a thread hop costs more than they do), CPU-heavy
ones in a thread so the event loop never blocks. Each call has its guard's timeout; an error
or timeout follows the guard's `on_error`. Monitor-mode verdicts are recorded, never applied.

Inside a recorded trace, every guard run on an input or a whole output gets one
`apply_guardrail` span (the proposed GenAI guardrail convention, mesh.telemetry.semconv):
decision, policy id and version, finding categories, never the text. A stream's per-chunk runs
get a span only when the verdict is not "allow" or the guard failed: a span per guard per chunk
would flood the trace. Fast guards get their span after the fact from measured times (a
current-span context costs more than the guard here); CPU-heavy ones run inside a current
`guard_span`, so a validator's own spans nest under it. Outside a recorded trace no span is
made at all: ~50 µs per guard on these machines even with no SDK installed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.trace import Tracer

from guards.errors import GuardFailure
from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.policy_loader import BuiltGuard
from guards.verdict import (
    Action,
    ChainResult,
    Finding,
    GuardOutcome,
    Mode,
    Stage,
    Verdict,
    mask_spans,
)
from mesh.telemetry import semconv

log = logging.getLogger(__name__)

Check = InputCheck | OutputChunkCheck | OutputFinalCheck


def _hook(built: BuiltGuard, check: Check) -> Callable[[], Verdict]:
    guard = built.guard
    if isinstance(check, InputCheck):
        return lambda: guard.check_input(check)
    if isinstance(check, OutputChunkCheck):
        return lambda: guard.check_output_chunk(check)
    return lambda: guard.check_output_final(check)


async def _run_one(built: BuiltGuard, check: Check) -> Verdict:
    call = _hook(built, check)
    timeout = built.spec.timeout_ms / 1000
    try:
        if built.guard.cpu_heavy:
            return await asyncio.wait_for(asyncio.to_thread(call), timeout)
        # Inline: fast detectors. They cannot be interrupted, and failing one after the fact
        # on a loaded machine would turn CPU contention into blocks; an overrun is logged.
        started = time.perf_counter()
        verdict = call()
        if time.perf_counter() - started > timeout:
            log.warning(
                "inline guard %s overran its %d ms timeout", built.spec.name, built.spec.timeout_ms
            )
        return verdict
    except TimeoutError:
        raise GuardFailure(f"timed out after {built.spec.timeout_ms} ms", "timeout") from None
    except Exception as exc:
        raise GuardFailure(f"{type(exc).__name__}: {exc}", type(exc).__qualname__) from exc


async def _outcome(built: BuiltGuard, stage: Stage, check: Check) -> GuardOutcome:
    spec = built.spec
    try:
        verdict = await _run_one(built, check)
    except GuardFailure as failure:
        log.warning("guard %s failed (%s); on_error=%s", spec.name, failure, spec.on_error)
        failed = (
            Verdict.block([Finding("GUARD_ERROR", 0, 0, 1.0)])
            if spec.on_error == "closed"
            else Verdict.allow()
        )
        return GuardOutcome(
            spec.name,
            stage,
            spec.mode_enum,
            failed,
            error=str(failure),
            error_type=failure.error_type,
        )
    return GuardOutcome(spec.name, stage, spec.mode_enum, verdict)


def combine(text: str, outcomes: Sequence[GuardOutcome], policy_version: str) -> ChainResult:
    """Any enforced block blocks; enforced redactions are applied in policy order; flags pass."""
    enforced = [o for o in outcomes if o.enforced]
    if any(o.verdict.action is Action.BLOCK for o in enforced):
        return ChainResult(Action.BLOCK, text, tuple(outcomes), policy_version)
    redactions = [
        f for o in enforced if o.verdict.action is Action.REDACT for f in o.verdict.findings
    ]
    if redactions:
        return ChainResult(
            Action.REDACT,
            mask_spans(text, redactions),
            tuple(outcomes),
            policy_version,
            tuple(redactions),
        )
    action = Action.FLAG if any(o.verdict.action is Action.FLAG for o in enforced) else Action.ALLOW
    return ChainResult(action, text, tuple(outcomes), policy_version)


def _categories(outcome: GuardOutcome) -> list[str]:
    return [f.type for f in outcome.verdict.findings]


def _decision(outcome: GuardOutcome) -> str | None:
    """A monitored guard changed nothing: its decision is "allow" whatever it would have done
    (the would-be action stays in mesh.guard.action). None: derived from the action."""
    return "allow" if outcome.mode is Mode.MONITOR else None


class GuardChain:
    """The guards of one stage for one tenant under one policy version."""

    def __init__(
        self,
        guards: Sequence[BuiltGuard],
        stage: Stage,
        policy_version: str,
        *,
        policy_id: str = "",
        tracer: Tracer | None = None,
    ) -> None:
        self.guards = [g for g in guards if stage in g.spec.stages]
        self.stage = stage
        self.policy_version = policy_version
        self.policy_id = policy_id
        self.tracer = tracer  # None: the process's global tracer provider

    async def _in_span(self, built: BuiltGuard, check: Check) -> GuardOutcome:
        """A CPU-heavy guard run inside its current span."""
        with semconv.guard_span(
            built.spec.name,
            self.stage.value,
            policy_id=self.policy_id or None,
            policy_version=self.policy_version,
            tracer=self.tracer,
        ) as span:
            outcome = await _outcome(built, self.stage, check)
            semconv.record_guard_outcome(
                span,
                action=outcome.verdict.action.value,
                categories=_categories(outcome),
                decision=_decision(outcome),
                mode=outcome.mode.value,
                error_type=outcome.error_type or None,
            )
        return outcome

    async def _timed(self, built: BuiltGuard, check: Check, *, always: bool) -> GuardOutcome:
        """A guard run whose span is made afterwards from its times (if `always` or notable)."""
        start_ns = time.time_ns()
        outcome = await _outcome(built, self.stage, check)
        if always or outcome.verdict.action is not Action.ALLOW or outcome.error_type:
            semconv.record_guard_run(
                built.spec.name,
                self.stage.value,
                start_ns=start_ns,
                end_ns=time.time_ns(),
                policy_id=self.policy_id or None,
                policy_version=self.policy_version,
                action=outcome.verdict.action.value,
                categories=_categories(outcome),
                decision=_decision(outcome),
                mode=outcome.mode.value,
                error_type=outcome.error_type or None,
                tracer=self.tracer,
            )
        return outcome

    async def _run_guard(self, built: BuiltGuard, check: Check, traced: bool) -> GuardOutcome:
        if not traced:
            return await _outcome(built, self.stage, check)
        if isinstance(check, OutputChunkCheck):
            return await self._timed(built, check, always=False)
        if built.guard.cpu_heavy:
            return await self._in_span(built, check)
        return await self._timed(built, check, always=True)

    async def run(self, check: Check) -> ChainResult:
        if not self.guards:
            return ChainResult(Action.ALLOW, check.text, (), self.policy_version)
        traced = trace.get_current_span().is_recording()
        if len(self.guards) == 1 or not any(g.guard.cpu_heavy for g in self.guards):
            # All inline: gather would only add task overhead, the result is the same.
            outcomes = [await self._run_guard(g, check, traced) for g in self.guards]
        else:
            outcomes = list(
                await asyncio.gather(*(self._run_guard(g, check, traced) for g in self.guards))
            )
        return combine(check.text, outcomes, self.policy_version)

"""Runs a policy's guards on one text and combines their verdicts into one decision.

Guards run concurrently: fast ones inline (a thread hop costs more than they do), CPU-heavy
ones in a thread so the event loop never blocks. Each call has its guard's timeout; an error
or timeout follows the guard's `on_error`. Monitor-mode verdicts are recorded, never applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from guards.errors import GuardFailure
from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.policy_loader import BuiltGuard
from guards.verdict import Action, ChainResult, Finding, GuardOutcome, Stage, Verdict, mask_spans

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
        loop = asyncio.get_running_loop()
        started = loop.time()
        verdict = call()
        if loop.time() - started > timeout:
            log.warning(
                "inline guard %s overran its %d ms timeout", built.spec.name, built.spec.timeout_ms
            )
        return verdict
    except TimeoutError:
        raise GuardFailure(f"timed out after {built.spec.timeout_ms} ms") from None
    except Exception as exc:
        raise GuardFailure(f"{type(exc).__name__}: {exc}") from exc


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
        return GuardOutcome(spec.name, stage, spec.mode_enum, failed, error=str(failure))
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


class GuardChain:
    """The guards of one stage for one tenant under one policy version."""

    def __init__(self, guards: Sequence[BuiltGuard], stage: Stage, policy_version: str) -> None:
        self.guards = [g for g in guards if stage in g.spec.stages]
        self.stage = stage
        self.policy_version = policy_version

    async def run(self, check: Check) -> ChainResult:
        if not self.guards:
            return ChainResult(Action.ALLOW, check.text, (), self.policy_version)
        if len(self.guards) == 1 or not any(g.guard.cpu_heavy for g in self.guards):
            # All inline: gather would only add task overhead, the result is the same.
            outcomes = [await _outcome(g, self.stage, check) for g in self.guards]
        else:
            outcomes = list(
                await asyncio.gather(*(_outcome(g, self.stage, check) for g in self.guards))
            )
        return combine(check.text, outcomes, self.policy_version)

"""Runs a policy's guards on one text and combines their verdicts into one decision.

Guards run concurrently: fast ones inline (a thread hop costs more than they do), CPU-heavy
ones in the guards' own worker threads so the event loop never blocks (guards/check_threads.py:
a check that outlives its deadline keeps its worker, so each guard may leave only a few
behind), guardrails-ai validators in another process (guards/validator_sandbox.py), killed at
their deadline. Each call has its guard's timeout; an error or timeout follows the guard's
`on_error`. Monitor-mode verdicts are recorded, never applied.

Inside a recorded trace, a chain run on an input or a whole output is ONE `apply_guardrail
{target}` span (mesh.telemetry.semconv.guard_chain_span: the combined decision, policy id and
version) with one `mesh.guard.run` event per guard (decision, action, mode, finding
categories, error type, duration), never the text. A span per guard was ~7 spans per request,
each exported and stored; an event is a small record on a span that exists anyway. The chain
span is current while the guards run, so a CPU-heavy guard's own spans in its worker thread
nest under it. A stream's per-chunk runs make no span: only a notable guard run (not "allow",
or failed) becomes an event on the current span, since a span or event per guard per chunk
would flood the trace. Outside a recorded trace nothing is recorded at all.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from guards.check_threads import CHECK_THREADS
from guards.errors import GuardFailure
from guards.hooks import (
    CPU_HEAVY_TIMEOUT_MS,
    INLINE_TIMEOUT_MS,
    InputCheck,
    OutputChunkCheck,
    OutputFinalCheck,
)
from guards.policy_loader import BuiltGuard
from guards.verdict import (
    ALLOWED,
    GUARD_ERROR,
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
# Above this many characters fast guards leave the event loop: the default chain costs roughly
# 0.5 ms per KB here, so 8 KB holds the loop for a few milliseconds at most.
OFF_LOOP_CHARS = 8192
# Texts a chain allowed untouched, remembered per tenant: a repeated prompt (a retry, a popular
# question, every exact cache hit) then skips the detectors, which were a fifth of the router's
# work on a cache hit (py-spy). Only where every guard is deterministic (the built-in
# detectors; a guardrails-ai validator may call a model, so its chain never remembers), and
# never a block, redaction, flag, monitor-mode finding or failure: those run, and are recorded
# and audited, every time. A new policy builds new chains, so nothing outlives its policy.
ALLOWED_MEMO_ENTRIES = 1024


def _call(built: BuiltGuard, check: Check) -> Verdict:
    """The guard's hook for this kind of check, called now."""
    guard = built.guard
    if isinstance(check, OutputChunkCheck):
        return guard.check_output_chunk(check)
    if isinstance(check, InputCheck):
        return guard.check_input(check.view(built.roles))
    return guard.check_output_final(check)


def _hook(built: BuiltGuard, check: Check) -> Callable[[], Verdict]:
    """`_call` for a worker thread to run."""
    return functools.partial(_call, built, check)


def timeout_ms(built: BuiltGuard) -> int:
    """The guard's deadline: its spec's, else the default for how it runs."""
    if built.spec.timeout_ms is not None:
        return built.spec.timeout_ms
    return CPU_HEAVY_TIMEOUT_MS if built.guard.cpu_heavy else INLINE_TIMEOUT_MS


async def _run_one(built: BuiltGuard, check: Check) -> Verdict:
    call = _hook(built, check)
    deadline_ms = timeout_ms(built)
    timeout = deadline_ms / 1000
    try:
        isolated = getattr(built.guard, "check_isolated", None)
        if isolated is not None:
            # Out of process (guardrails-ai validators): a worker still on the call at the
            # deadline is killed. A thread cannot be stopped, and a validator's regex holding
            # the GIL in one froze the whole event loop far past its timeout.
            text = check.view(built.roles).text if isinstance(check, InputCheck) else check.text
            verdict: Verdict = await asyncio.wait_for(isolated(text, timeout), timeout)
            return verdict
        if built.guard.cpu_heavy:
            return await CHECK_THREADS.run_until(built.spec.name, call, timeout)
        # Fast detectors: inline on short texts (a thread hop costs more than they do), in a
        # thread on long ones so the event loop (health checks, other calls) keeps getting the
        # GIL. Never cut short: failing a guard after the fact would turn a slow text, or CPU
        # contention, into an `on_error` pass; an overrun is logged instead.
        started = time.perf_counter()
        verdict = call() if len(check.text) <= OFF_LOOP_CHARS else await CHECK_THREADS.run(call)
        if time.perf_counter() - started > timeout:
            log.warning("inline guard %s overran its %d ms timeout", built.spec.name, deadline_ms)
        return verdict
    except Exception as exc:
        raise _failure(exc, deadline_ms) from exc


def _failure(exc: Exception, deadline_ms: int) -> GuardFailure:
    """What a guard's exception says in its outcome: a timeout, or the exception's type."""
    if isinstance(exc, GuardFailure):
        return exc  # says what failed already (a sandboxed validator that raised, a worker died)
    if isinstance(exc, TimeoutError):
        return GuardFailure(f"timed out after {deadline_ms} ms", "timeout")
    return GuardFailure(f"{type(exc).__name__}: {exc}", type(exc).__qualname__)


def _failed(built: BuiltGuard, stage: Stage, failure: GuardFailure) -> GuardOutcome:
    spec = built.spec
    # The type only: a validator's message can quote the checked text.
    log.warning("guard %s failed (%s); on_error=%s", spec.name, failure.error_type, spec.on_error)
    # on_error closed blocks; open lets the text pass, flagged: an allow here would read, in the
    # verdicts and the audit log, as if the guard had checked the text and found nothing (a
    # validator raising on every call then allowed every request unseen).
    error = [Finding(GUARD_ERROR, 0, 0, 1.0)]
    failed = Verdict.block(error) if spec.on_error == "closed" else Verdict.flag(error)
    return GuardOutcome(
        spec.name, stage, spec.mode_enum, failed, error=str(failure), error_type=failure.error_type
    )


async def _outcome(built: BuiltGuard, stage: Stage, check: Check) -> GuardOutcome:
    try:
        verdict = await _run_one(built, check)
    except GuardFailure as failure:
        return _failed(built, stage, failure)
    return GuardOutcome(built.spec.name, stage, built.spec.mode_enum, verdict)


@dataclass(frozen=True)
class _Inline:
    """A fast guard's settings read once per chain, for `GuardChain._inline_runs`; `allowed`
    is its outcome whenever it allows with nothing found (outcomes are immutable)."""

    built: BuiltGuard
    mode: Mode
    deadline_ms: int
    allowed: GuardOutcome


def _allowed(built: BuiltGuard, stage: Stage) -> GuardOutcome:
    return GuardOutcome(built.spec.name, stage, built.spec.mode_enum, ALLOWED)


def combine(text: str, outcomes: Sequence[GuardOutcome], policy_version: str) -> ChainResult:
    """Any enforced block blocks; enforced redactions are applied in policy order; flags pass."""
    if all(o.verdict is ALLOWED for o in outcomes):  # the common case, answered at once
        return ChainResult(Action.ALLOW, text, tuple(outcomes), policy_version)
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


def _untouched(result: ChainResult) -> bool:
    """Every guard allowed, found nothing and did not fail: the text passes as it came."""
    return result.action is Action.ALLOW and all(
        o.verdict.action is Action.ALLOW and not o.verdict.findings and not o.error_type
        for o in result.outcomes
    )


def _categories(outcome: GuardOutcome) -> list[str]:
    return [f.type for f in outcome.verdict.findings]


def _decision(outcome: GuardOutcome) -> str | None:
    """A monitored guard changed nothing: its decision is "allow" whatever it would have done
    (the would-be action stays in mesh.guard.action). None: derived from the action."""
    return "allow" if outcome.mode is Mode.MONITOR else None


class _Timed(NamedTuple):
    """A guard's outcome with when its run ended and how long it took (epoch / ns). A tuple:
    one is made per guard per check, and a frozen dataclass cost ~1 us more each."""

    outcome: GuardOutcome
    end_ns: int
    duration_ns: int

    @property
    def notable(self) -> bool:
        return self.outcome.verdict.action is not Action.ALLOW or bool(self.outcome.error_type)


async def _timed(built: BuiltGuard, stage: Stage, check: Check) -> _Timed:
    start_ns = time.time_ns()
    outcome = await _outcome(built, stage, check)
    end_ns = time.time_ns()
    return _Timed(outcome, end_ns, end_ns - start_ns)


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
        self._cpu_heavy = any(g.guard.cpu_heavy for g in self.guards)
        # Every guard a fast detector called in place: such a chain runs them in one loop
        # (`_inline_runs`), not a coroutine, a closure and the spec's settings read per guard
        # per call: 20 -> ~4 us of the default output chain's ~37 us per stream chunk.
        self._inline: list[_Inline] | None = None
        if not any(
            g.guard.cpu_heavy or getattr(g.guard, "check_isolated", None) for g in self.guards
        ):
            self._inline = [
                _Inline(g, g.spec.mode_enum, timeout_ms(g), _allowed(g, stage)) for g in self.guards
            ]
        # All inline: gather would only add task overhead, the result is the same.
        self._sequential = len(self.guards) == 1 or not self._cpu_heavy
        deterministic = all(getattr(g.guard, "deterministic", False) for g in self.guards)
        self._allowed: OrderedDict[bytes, tuple[GuardOutcome, ...]] | None = (
            OrderedDict() if self.guards and deterministic else None
        )

    def _inline_runs(self, check: Check) -> list[_Timed]:
        """Every guard of an all-fast chain on a short text, in policy order; what `_timed`
        gives for each, without awaiting (nothing here ever suspends)."""
        assert self._inline is not None
        stage, runs = self.stage, []
        for plan in self._inline:
            built = plan.built
            start_ns = time.time_ns()
            try:
                verdict = _call(built, check)
            except Exception as exc:
                outcome = _failed(built, stage, _failure(exc, plan.deadline_ms))
            else:
                if verdict is ALLOWED:
                    outcome = plan.allowed
                else:
                    outcome = GuardOutcome(built.spec.name, stage, plan.mode, verdict)
            end_ns = time.time_ns()
            if end_ns - start_ns > plan.deadline_ms * 1_000_000:
                log.warning(
                    "inline guard %s overran its %d ms timeout", built.spec.name, plan.deadline_ms
                )
            runs.append(_Timed(outcome, end_ns, end_ns - start_ns))
        return runs

    def _in_place(self, check: Check) -> bool:
        return self._inline is not None and len(check.text) <= OFF_LOOP_CHARS

    async def _outcomes(self, check: Check) -> list[GuardOutcome]:
        if self._in_place(check):
            return [run.outcome for run in self._inline_runs(check)]
        if self._sequential:
            return [await _outcome(g, self.stage, check) for g in self.guards]
        return list(await asyncio.gather(*(_outcome(g, self.stage, check) for g in self.guards)))

    async def _timed_outcomes(self, check: Check) -> list[_Timed]:
        if self._in_place(check):
            return self._inline_runs(check)
        if self._sequential:
            return [await _timed(g, self.stage, check) for g in self.guards]
        return list(await asyncio.gather(*(_timed(g, self.stage, check) for g in self.guards)))

    def _event(self, span: Span, run: _Timed, *, chunk_offset: int | None = None) -> None:
        outcome = run.outcome
        outside_chain = chunk_offset is not None
        semconv.record_guard_event(
            span,
            outcome.guard,
            action=outcome.verdict.action.value,
            end_ns=run.end_ns,
            duration_ns=run.duration_ns,
            categories=_categories(outcome),
            decision=_decision(outcome),
            mode=outcome.mode.value,
            error_type=outcome.error_type or None,
            stage=self.stage.value if outside_chain else None,
            chunk_offset=chunk_offset,
            policy_version=self.policy_version if outside_chain else None,
        )

    async def _run_chunk_traced(self, check: OutputChunkCheck, current: Span) -> ChainResult:
        runs = await self._timed_outcomes(check)
        for run in runs:
            if run.notable:
                self._event(current, run, chunk_offset=check.offset)
        return combine(check.text, [r.outcome for r in runs], self.policy_version)

    async def _run_then_record(self, check: Check, current: Span) -> ChainResult:
        """Fast guards: run first, then record one event on the current span when every guard
        allowed, or a span (made from the measured times) when one did something."""
        start_ns = time.time_ns()
        runs = await self._timed_outcomes(check)
        end_ns = time.time_ns()
        result = combine(check.text, [r.outcome for r in runs], self.policy_version)
        names = [r.outcome.guard for r in runs]
        durations = [round(r.duration_ns / 1e6, 3) for r in runs]
        if not any(r.notable for r in runs):
            semconv.record_allowed_chain(
                current,
                self.stage.value,
                guards=names,
                durations_ms=durations,
                end_ns=end_ns,
                policy_id=self.policy_id or None,
                policy_version=self.policy_version,
            )
            return result
        span = semconv.start_guard_chain_span(
            self.stage.value,
            guards=len(self.guards),
            start_ns=start_ns,
            policy_id=self.policy_id or None,
            policy_version=self.policy_version,
            tracer=self.tracer,
        )
        self._record(span, runs, result, names, durations)
        span.end(end_time=end_ns)
        return result

    def _record(
        self,
        span: Span,
        runs: Sequence[_Timed],
        result: ChainResult,
        names: list[str],
        durations: list[float],
    ) -> None:
        # An event only for a guard that did something (or would have, in monitor mode) or
        # failed; the chain span lists every guard and its time.
        for run in runs:
            if run.notable:
                self._event(span, run)
        failed = next((r.outcome for r in runs if r.outcome.error_type), None)
        semconv.record_chain_verdict(
            span,
            action=result.action.value,
            categories=[c for o in result.outcomes if o.enforced for c in _categories(o)],
            failed_guard=failed.guard if failed else None,
            error_type=failed.error_type if failed else None,
            guards=names,
            durations_ms=durations,
        )

    async def _run_in_chain_span(self, check: Check) -> ChainResult:
        with semconv.guard_chain_span(
            self.stage.value,
            guards=len(self.guards),
            policy_id=self.policy_id or None,
            policy_version=self.policy_version,
            tracer=self.tracer,
        ) as span:
            runs = await self._timed_outcomes(check)
            result = combine(check.text, [r.outcome for r in runs], self.policy_version)
            names = [r.outcome.guard for r in runs]
            self._record(span, runs, result, names, [round(r.duration_ns / 1e6, 3) for r in runs])
        return result

    async def run(self, check: Check) -> ChainResult:
        if not self.guards:
            return ChainResult(Action.ALLOW, check.text, (), self.policy_version)
        key = self._memo_key(check)
        if key is None:
            return await self._run(check)
        assert self._allowed is not None
        known = self._allowed.get(key)
        if known is not None:
            self._allowed.move_to_end(key)
            return self._replay(check, known)
        result = await self._run(check)
        if _untouched(result):
            self._allowed[key] = result.outcomes
            while len(self._allowed) > ALLOWED_MEMO_ENTRIES:
                self._allowed.popitem(last=False)
        return result

    def _memo_key(self, check: Check) -> bytes | None:
        """A 128-bit digest of what the verdicts depend on, or None where nothing is kept (a
        stream's chunks, a chain with a guard that may answer differently next time)."""
        if self._allowed is None or isinstance(check, OutputChunkCheck):
            return None
        turns = check.turns if isinstance(check, InputCheck) else ()
        layout = ";".join(f"{t.role}:{t.start}:{t.end}" for t in turns)
        digest = hashlib.blake2b(digest_size=16)
        for part in (check.tenant, check.system_prompt, layout, check.text):
            raw = part.encode("utf-8", "surrogatepass")
            digest.update(len(raw).to_bytes(8, "little"))
            digest.update(raw)
        return digest.digest()

    def _replay(self, check: Check, outcomes: tuple[GuardOutcome, ...]) -> ChainResult:
        """A remembered allow: the same outcomes, one event saying no guard had to run."""
        current = trace.get_current_span()
        if current.is_recording():
            semconv.record_allowed_chain(
                current,
                self.stage.value,
                guards=[o.guard for o in outcomes],
                durations_ms=[0.0] * len(outcomes),
                end_ns=time.time_ns(),
                policy_id=self.policy_id or None,
                policy_version=self.policy_version,
                remembered=True,
            )
        return ChainResult(Action.ALLOW, check.text, outcomes, self.policy_version)

    async def _run(self, check: Check) -> ChainResult:
        current = trace.get_current_span()
        if not current.is_recording():
            return combine(check.text, await self._outcomes(check), self.policy_version)
        if isinstance(check, OutputChunkCheck):
            return await self._run_chunk_traced(check, current)
        if self._cpu_heavy:  # its own spans (in a worker thread) nest under a current span
            return await self._run_in_chain_span(check)
        return await self._run_then_record(check, current)

"""The router's InferenceService: plan, consult the cache, hold budget, forward, fall back, explain.

Fallback happens only before the first event reaches the caller (the commit point): after
that a failure ends the stream with a clear status, never a silent splice of two models.
Deadlines travel as the remaining time on every upstream call; a cancelled caller cancels
the upstream call, which aborts the generation on the node. A stream that sends nothing within
`first_token_timeout_s` counts as a failed attempt (gRPC keepalive does not notice a frozen
node for tens of seconds, measured in DESIGN.md), and one that stalls after committing is ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import grpc
import grpc.aio
from opentelemetry.trace import Tracer

from mesh.config import tier_name
from mesh.contract.errors import DeadlineExceeded, MeshError, Overloaded, UpstreamUnavailable
from mesh.contract.status import (
    error_details,
    passthrough_status,
    stream_error_boundary,
    unary_error_boundary,
)
from mesh.contract.validation import validate_generation
from mesh.router.accounting import Accounting, Hold
from mesh.router.budget import BudgetExceeded
from mesh.router.cache import CacheHit, CacheKey, CacheScope, Outcome, ResponseCache
from mesh.router.catalog import Candidate, iter_cards
from mesh.router.ledger import LedgerRow
from mesh.router.planner import Plan, Planner
from mesh.router.policies import PrefixAffinityPolicy, RouteDecision
from mesh.router.upstream import UpstreamPool
from mesh.telemetry import semconv as sc
from mesh.telemetry.metrics import ROLE_ROUTER, MeshMetrics
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

log = logging.getLogger(__name__)
Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable generic type here
_FINISH_NAMES = {
    types_pb2.FINISH_REASON_STOP: "stop",
    types_pb2.FINISH_REASON_LENGTH: "length",
    types_pb2.FINISH_REASON_ABORTED: "aborted",
    types_pb2.FINISH_REASON_GUARD_BLOCKED: "guard_blocked",
}
_COMPLETE = (types_pb2.FINISH_REASON_STOP, types_pb2.FINISH_REASON_LENGTH)

# What the stream producer hands the relaying generator: an event, an error, or None (done).
_StreamItem: TypeAlias = (
    "inference_pb2.GenerateStreamResponse | grpc.aio.AioRpcError | MeshError | None"
)
_STREAM_BUFFER = 32
_REPLAY_CHUNK_CHARS = 48

# Only these mean "this node could not take the request": safe to try the next one.
_FALLBACK_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# These say something about the node itself, so its breaker counts them.
_NODE_FAULT_CODES = _FALLBACK_CODES | {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@dataclass
class RouterSettings:
    """Timeouts of the forwarding path."""

    default_timeout_s: float = 120.0
    first_token_timeout_s: float | None = 30.0
    idle_timeout_s: float | None = 30.0


@dataclass
class _Attempts:
    """What happened to the candidates of one request."""

    made: int = 0
    failures: dict[Candidate, str] = field(default_factory=dict)
    codes: list[grpc.StatusCode] = field(default_factory=list)
    retry_after_s: float = 0.0

    def fail(self, cand: Candidate, why: str, code: grpc.StatusCode | None = None) -> None:
        self.failures[cand] = why
        if code is not None:
            self.codes.append(code)

    def exhausted(self, decision: RouteDecision) -> MeshError:
        summary = "; ".join(f"{c.node_id}: {why}" for c, why in self.failures.items())[:512]
        metadata = {"attempts": str(self.made), "failures": summary}
        if self.codes and all(c == grpc.StatusCode.RESOURCE_EXHAUSTED for c in self.codes):
            return Overloaded(
                f"all {len(decision.ordered)} candidate node(s) are at capacity",
                metadata=metadata,
                retry_after_s=self.retry_after_s or 1.0,
            )
        return UpstreamUnavailable(
            f"all {len(decision.ordered)} candidate node(s) failed", metadata=metadata
        )


class _Stalled(Exception):
    """An upstream stream sent nothing within the first-token or idle timeout."""


@dataclass(frozen=True)
class _StreamEnd:
    """How one committed (or finally failed) upstream stream ended."""

    status: str
    committed: bool
    route: types_pb2.RouteInfo | None = None


@dataclass
class _Request:
    """One request in flight: the plan, then the decision, cache key and budget hold."""

    request_id: str
    plan: Plan
    deadline: float
    cache_key: CacheKey | None = None
    decision: RouteDecision | None = None
    hold: Hold | None = None
    started: float = field(default_factory=time.perf_counter)


class RouterServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Routes InferenceService calls over the nodes of the routing table."""

    def __init__(
        self,
        planner: Planner,
        pool: UpstreamPool,
        accounting: Accounting,
        *,
        router_id: str,
        settings: RouterSettings | None = None,
        cache: ResponseCache | None = None,
        tenant_of: Callable[[Context], str] = lambda _context: "default",
        policy_version: Callable[[], str] = lambda: "",
        metrics: MeshMetrics | None = None,
        defer_cache_writes: bool = False,
        tracer: Tracer | None = None,
    ) -> None:
        self.tracer = tracer  # the router's Telemetry; None: the global provider
        self.planner = planner
        self.pool = pool
        self.accounting = accounting
        self.router_id = router_id
        self.settings = settings or RouterSettings()
        self.cache = cache
        self.tenant_of = tenant_of
        self.policy_version = policy_version
        self.metrics = metrics
        # With output guards outside this servicer, an answer is cached only once they let it
        # through: `release(request_id, allowed)` is their call.
        self.defer_cache_writes = defer_cache_writes
        self._pending_writes: dict[str, Callable[[], None]] = {}

    # -- request set-up ---------------------------------------------------------------------
    async def _begin(self, request: Any, context: Context) -> _Request:
        validate_generation(request)
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        tenant = self.tenant_of(context)
        sc.tag_request(request.request_id, tenant=tenant)
        plan = await self.planner.plan(tenant, request.messages, request.sampling, request.routing)
        remaining = context.time_remaining()
        budget = self.settings.default_timeout_s if remaining is None else min(remaining, 1e6)
        state = _Request(request.request_id, plan, time.monotonic() + budget)
        if self.cache is not None and request.routing.cache != types_pb2.CACHE_MODE_BYPASS:
            scope = CacheScope.build(
                tenant, self.policy_version(), plan.cache_target, request.sampling
            )
            state.cache_key = self.cache.key(scope, request.messages)
        return state

    async def _cached(self, state: _Request, request: Any) -> CacheHit | None:
        if self.cache is None or state.cache_key is None:
            return None
        if request.routing.cache == types_pb2.CACHE_MODE_REFRESH:
            return None
        hit = await self.cache.aget(state.cache_key)
        if self.metrics is not None:
            self.metrics.count_cache_lookup(
                hit=hit is not None,
                kind=hit.kind if hit else "miss",
                saved_usd=hit.saved_cost_usd if hit else None,
            )
        return hit

    def _decide(self, state: _Request) -> RouteDecision:
        decision = self.planner.decide(state.plan)
        state.decision = decision
        state.hold = self.accounting.hold(state.plan.tenant, decision.estimated_cost_usd)
        return decision

    def _remaining(self, state: _Request) -> float:
        left = state.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before an upstream answered")
        return left

    def _claim(self, state: _Request, cand: Candidate, attempts: _Attempts) -> bool:
        """Whether `cand` may be tried now: its breaker admits a call and the budget covers it."""
        assert state.decision is not None and state.hold is not None
        if not self.planner.breakers.allow_request(cand.node_id):
            attempts.fail(cand, "breaker open")
            return False
        try:
            self.accounting.raise_to(state.hold, state.decision.estimated_cost_for(cand))
        except BudgetExceeded:
            attempts.fail(cand, "over budget")
            return False
        return True

    def _node_failed(
        self, cand: Candidate, code: grpc.StatusCode, why: str, attempts: _Attempts
    ) -> None:
        attempts.fail(cand, why, code)
        if code in _NODE_FAULT_CODES:
            self.planner.breakers.record_failure(cand.node_id)
        if code == grpc.StatusCode.UNAVAILABLE:
            self.pool.mark_failed(cand.node_id)

    # -- results ----------------------------------------------------------------------------
    def _route_info(
        self,
        state: _Request,
        used: Candidate,
        attempts: _Attempts,
        usage: types_pb2.Usage,
    ) -> types_pb2.RouteInfo:
        decision = state.decision
        assert decision is not None
        candidates = decision.route_candidates(used)
        for info, scored in zip(candidates, decision.scored, strict=True):
            failed = attempts.failures.get(scored.candidate)
            if failed and not info.chosen:
                info.rejected_reason = failed
        reason = decision.reason
        if used is not decision.chosen:
            reason += f"; fell back to {used.node_id} after {len(attempts.failures)} failure(s)"
        return types_pb2.RouteInfo(
            node_id=used.node_id,
            model=used.model,
            provider=used.card.provider,
            policy=decision.policy,
            reason=reason,
            candidates=candidates,
            attempts=attempts.made,
            cache_hit=False,
            estimated_cost_usd=decision.estimated_cost_for(used),
            baseline_cost_usd=self.accounting.baseline_cost(usage),
            tier=used.card.tier,
        )

    def _finish(
        self,
        state: _Request,
        used: Candidate,
        attempts: _Attempts,
        usage: types_pb2.Usage,
        text: str,
        finish_reason: int,
        route_span: Any,
    ) -> types_pb2.RouteInfo:
        """Cost, budget, ledger, cache, affinity and metrics for an answered request."""
        usage.cost_usd = self.accounting.cost(used.card, usage)
        route = self._route_info(state, used, attempts, usage)
        if state.hold is not None:
            self.accounting.settle(state.hold, usage.cost_usd)
            state.hold = None
        self._ledger(state, route, usage)
        policy = state.plan.policy
        served_elsewhere = state.decision is not None and used is not state.decision.chosen
        if isinstance(policy, PrefixAffinityPolicy) and served_elsewhere:
            policy.remember(state.plan.route_request.messages, used.node_id)
        if finish_reason in _COMPLETE:
            self._cache_answer(state, text, usage, used, finish_reason)
        sc.record_route(
            route_span,
            node=used.node_id,
            model=used.model,
            provider=used.card.provider,
            estimated_cost_usd=route.estimated_cost_usd,
            baseline_cost_usd=route.baseline_cost_usd,
            cache_hit=False,
        )
        sc.record_route_result(
            route_span, attempts=attempts.made, actual_cost_usd=usage.cost_usd, node=used.node_id
        )
        if self.metrics is not None:
            self.metrics.add_cost(
                usage.cost_usd, model=used.model, node=used.node_id, provider=used.card.provider
            )
        return route

    def _ledger(self, state: _Request, route: types_pb2.RouteInfo, usage: types_pb2.Usage) -> None:
        self.accounting.record(
            LedgerRow(
                request_id=state.request_id,
                tenant=state.plan.tenant,
                node_id=route.node_id,
                model=route.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
                baseline_cost_usd=route.baseline_cost_usd,
                cache_hit=route.cache_hit,
                policy=route.policy,
                attempts=route.attempts,
                guard_policy_version=self.policy_version(),
                estimated_cost_usd=route.estimated_cost_usd,
                tier=tier_name(state.plan.route_request.needed_tier),
            )
        )

    def _cache_answer(
        self,
        state: _Request,
        text: str,
        usage: types_pb2.Usage,
        used: Candidate,
        finish_reason: int,
    ) -> None:
        cache, key = self.cache, state.cache_key
        if cache is None or key is None:
            return

        def write() -> None:
            task = asyncio.ensure_future(
                cache.aput(
                    key,
                    text,
                    usage,
                    outcome=Outcome.COMPLETE,
                    model=used.model,
                    node_id=used.node_id,
                    finish_reason=finish_reason,
                )
            )
            task.add_done_callback(_log_cache_failure)

        if self.defer_cache_writes:
            self._pending_writes[state.request_id] = write
        else:
            write()

    def release(self, request_id: str, allowed: bool) -> None:
        """The output guards' verdict on a response: cache it only if it was let through."""
        write = self._pending_writes.pop(request_id, None)
        if write is not None and allowed:
            write()

    def _abandon(self, state: _Request, committed: bool, answered: bool = False) -> None:
        """A request that ended (without an answer, unless `answered`): give back or keep its
        budget hold; an unanswered one's deferred cache write is dropped."""
        if not answered:
            self._pending_writes.pop(state.request_id, None)
        if state.hold is not None:
            # Tokens were generated after the commit point: charge the hold, never less.
            self.accounting.settle(state.hold, state.hold.amount_usd if committed else 0.0)
            state.hold = None

    def _hit_route(self, state: _Request, hit: CacheHit) -> types_pb2.RouteInfo:
        return types_pb2.RouteInfo(
            node_id=hit.node_id,
            model=hit.model,
            provider="cache",
            policy=state.plan.policy.name,
            reason=(
                f"cache hit ({hit.kind}, similarity {hit.similarity:.3f}, age {hit.age_s:.0f}s): "
                f"answer first generated by {hit.model} on {hit.node_id}"
            ),
            attempts=0,
            cache_hit=True,
            estimated_cost_usd=0.0,
            baseline_cost_usd=self.accounting.baseline_cost(hit.usage),
            tier=state.plan.route_request.needed_tier,  # type: ignore[arg-type]
        )

    def _serve_hit(self, state: _Request, hit: CacheHit) -> tuple[types_pb2.RouteInfo, Any]:
        usage = types_pb2.Usage()
        usage.CopyFrom(hit.usage)
        usage.cost_usd = 0.0
        with sc.route_span(
            state.plan.policy.name, request_id=state.request_id, tracer=self.tracer
        ) as span:
            route = self._hit_route(state, hit)
            sc.record_route(
                span,
                node=hit.node_id,
                model=hit.model,
                provider="cache",
                reason=route.reason,
                cache_hit=True,
                baseline_cost_usd=route.baseline_cost_usd,
            )
        self._ledger(state, route, usage)
        return route, usage

    def _count(self, status: str, state: _Request | None, route: Any = None) -> None:
        if self.metrics is None:
            return
        self.metrics.count_request(
            status=status,
            model=route.model if route is not None else None,
            node=route.node_id if route is not None else None,
            policy=state.plan.policy.name if state is not None else None,
            role=ROLE_ROUTER,
        )

    @staticmethod
    def _status_of(exc: BaseException, context: Context) -> str:
        """The code a failed call ends with (an abort has already set it on the context)."""
        code = context.code() if hasattr(context, "code") else None
        if isinstance(exc, grpc.aio.AbortError) and isinstance(code, grpc.StatusCode):
            return str(code.name)
        return sc.code_of(exc)

    def _record_decision(self, span: Any, decision: RouteDecision) -> None:
        chosen = decision.chosen
        sc.record_route(
            span,
            node=chosen.node_id,
            model=chosen.model,
            provider=chosen.card.provider,
            candidates=len(decision.scored),
            reason=decision.reason,
            estimated_cost_usd=decision.estimated_cost_usd,
        )

    def _attempt_span(
        self, cand: Candidate, attempt: int, stream: bool, sampling: types_pb2.SamplingParams
    ) -> Any:
        return sc.attempt_span(
            cand.model,
            cand.card.provider,
            attempt=attempt,
            node=cand.node_id,
            server_address=cand.address,
            stream=stream,
            max_tokens=sampling.max_tokens if sampling.HasField("max_tokens") else None,
            temperature=sampling.temperature if sampling.HasField("temperature") else None,
            tracer=self.tracer,
        )

    @staticmethod
    def _record_reply(
        span: Any, reply: inference_pb2.GenerateResponse | inference_pb2.GenerationSummary
    ) -> None:
        sc.record_usage(
            span,
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            cached_input_tokens=reply.usage.cached_input_tokens,
            response_model=reply.model,
            finish_reasons=[_FINISH_NAMES.get(reply.finish_reason, "unknown")],
            response_id=reply.request_id,
        )

    # -- unary ------------------------------------------------------------------------------
    @unary_error_boundary
    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: Context
    ) -> inference_pb2.GenerateResponse:
        state: _Request | None = None
        try:
            state = await self._begin(request, context)
            hit = await self._cached(state, request)
            if hit is not None:
                route, usage = self._serve_hit(state, hit)
                self._count("OK", state, route)
                return inference_pb2.GenerateResponse(
                    request_id=request.request_id,
                    text=hit.text,
                    finish_reason=hit.finish_reason,  # type: ignore[arg-type]
                    usage=usage,
                    route=route,
                    model=hit.model,
                )
            reply = await self._forward_unary(state, request, context)
            self._count("OK", state, reply.route)
            return reply
        except BaseException as exc:
            if state is not None:
                self._abandon(state, committed=False)
            self._count(self._status_of(exc, context), state)
            raise

    async def _forward_unary(
        self, state: _Request, request: inference_pb2.GenerateRequest, context: Context
    ) -> inference_pb2.GenerateResponse:
        decision = self._decide(state)
        attempts = _Attempts()
        with sc.route_span(
            decision.policy, request_id=state.request_id, tracer=self.tracer
        ) as route_span:
            self._record_decision(route_span, decision)
            for cand in decision.ordered:
                if not self._claim(state, cand, attempts):
                    continue
                attempts.made += 1
                stub = self.pool.stub(cand.node_id, cand.address)
                with self._attempt_span(cand, attempts.made, False, request.sampling) as span:
                    started = time.perf_counter()
                    try:
                        reply: inference_pb2.GenerateResponse = await stub.Generate(
                            request, timeout=self._remaining(state)
                        )
                    except grpc.aio.AioRpcError as err:
                        sc.mark_outcome(span, err.code().name, err.details() or "")
                        if err.code() in _FALLBACK_CODES:
                            self._node_failed(cand, err.code(), err.code().name, attempts)
                            attempts.retry_after_s = max(attempts.retry_after_s, _retry_after(err))
                            continue
                        if err.code() in _NODE_FAULT_CODES:
                            self.planner.breakers.record_failure(cand.node_id)
                        self._abandon(state, committed=False)
                        await context.abort_with_status(passthrough_status(err))
                        raise  # unreachable: abort raises
                    self._record_reply(span, reply)
                    self._observe(cand, reply, time.perf_counter() - started, None)
                self.planner.breakers.record_success(cand.node_id)
                reply.route.CopyFrom(
                    self._finish(
                        state,
                        cand,
                        attempts,
                        reply.usage,
                        reply.text,
                        reply.finish_reason,
                        route_span,
                    )
                )
                return reply
            sc.record_route_result(route_span, attempts=attempts.made)
        raise attempts.exhausted(decision)

    def _observe(
        self, cand: Candidate, reply: Any, seconds: float, first_chunk_s: float | None
    ) -> None:
        if self.metrics is None:
            return
        provider = cand.card.provider or "self-hosted"
        self.metrics.record_tokens(
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            provider=provider,
            request_model=cand.model,
            response_model=reply.model or cand.model,
            node=cand.node_id,
            role=ROLE_ROUTER,
        )
        self.metrics.record_operation_duration(
            seconds,
            provider=provider,
            request_model=cand.model,
            response_model=reply.model,
            node=cand.node_id,
            role=ROLE_ROUTER,
        )

    # -- streaming --------------------------------------------------------------------------
    @stream_error_boundary
    async def GenerateStream(
        self,
        request: inference_pb2.GenerateStreamRequest,
        context: Context,
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        state: _Request | None = None
        try:
            state = await self._begin(request, context)
            hit = await self._cached(state, request)
        except BaseException as exc:
            self._count(sc.code_of(exc), state)
            raise
        if hit is not None:
            route, usage = self._serve_hit(state, hit)
            self._count("OK", state, route)
            for event in _replay(request.request_id, hit, route, usage):
                yield event
            return
        # grpc.aio may resume a response generator in a fresh context copy, so spans cannot
        # stay attached across `yield`: a producer task owns the upstream call and its spans,
        # and this generator only relays what it queues (bounded, so backpressure holds).
        events: asyncio.Queue[_StreamItem] = asyncio.Queue(maxsize=_STREAM_BUFFER)
        producer = asyncio.create_task(
            self._produce_stream(request, state, events), name=f"stream-{request.request_id}"
        )
        try:
            while True:
                item = await events.get()
                if isinstance(item, inference_pb2.GenerateStreamResponse):
                    yield item
                elif item is None:
                    return
                elif isinstance(item, grpc.aio.AioRpcError):
                    await context.abort_with_status(passthrough_status(item))
                else:
                    raise item
        finally:
            producer.cancel()  # the producer's finally cancels the upstream call
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def _produce_stream(
        self,
        request: inference_pb2.GenerateStreamRequest,
        state: _Request,
        events: asyncio.Queue[_StreamItem],
    ) -> None:
        """Try candidates until one commits (sends its first event), queueing what it sends."""
        attempts = _Attempts()
        end = _StreamEnd("UNKNOWN", committed=False)
        try:
            decision = self._decide(state)
            with sc.route_span(
                decision.policy, request_id=state.request_id, tracer=self.tracer
            ) as route_span:
                self._record_decision(route_span, decision)
                for cand in decision.ordered:
                    if not self._claim(state, cand, attempts):
                        continue
                    attempts.made += 1
                    outcome = await self._stream_attempt(
                        request, state, cand, attempts, route_span, events
                    )
                    if outcome is None:
                        continue  # fell back before committing
                    end = outcome
                    return
                sc.record_route_result(route_span, attempts=attempts.made)
            raise attempts.exhausted(decision)
        except MeshError as err:
            end = _StreamEnd(err.code.name, committed=False)
            await events.put(err)
        except asyncio.CancelledError:
            end = _StreamEnd("CANCELLED", committed=end.committed)
            raise
        finally:
            self._abandon(state, committed=end.committed, answered=end.status == "OK")
            self._count(end.status, state, end.route)
            with contextlib.suppress(asyncio.QueueFull):
                events.put_nowait(None)

    async def _stream_attempt(
        self,
        request: inference_pb2.GenerateStreamRequest,
        state: _Request,
        cand: Candidate,
        attempts: _Attempts,
        route_span: Any,
        events: asyncio.Queue[_StreamItem],
    ) -> _StreamEnd | None:
        """One upstream attempt; None means "fell back before committing, try the next"."""
        stub = self.pool.stub(cand.node_id, cand.address)
        with self._attempt_span(cand, attempts.made, True, request.sampling) as span:
            started = time.perf_counter()
            call = stub.GenerateStream(request, timeout=self._remaining(state))
            committed = False
            first_chunk_s: float | None = None
            text: list[str] = []
            try:
                while True:
                    event = await self._next_event(call, state, committed)
                    if event is None:  # ended without a summary: the node broke the contract
                        raise UpstreamUnavailable(
                            f"{cand.node_id} ended its stream without a summary",
                            metadata={"node": cand.node_id, "model": cand.model},
                        )
                    if event.HasField("summary"):
                        summary = event.summary
                        self._record_reply(span, summary)
                        self._observe(cand, summary, time.perf_counter() - started, first_chunk_s)
                        self.planner.breakers.record_success(cand.node_id)
                        route = self._finish(
                            state,
                            cand,
                            attempts,
                            summary.usage,
                            "".join(text),
                            summary.finish_reason,
                            route_span,
                        )
                        summary.route.CopyFrom(route)
                        await events.put(event)
                        # Read to EOF: the tracing interceptor ends the call's CLIENT span
                        # only when its response iterator is exhausted.
                        with contextlib.suppress(grpc.aio.AioRpcError):
                            await call.read()
                        return _StreamEnd("OK", committed=True, route=route)
                    if not committed:
                        first_chunk_s = time.perf_counter() - started
                        sc.record_first_chunk(span, first_chunk_s)
                        committed = True
                    text.append(event.delta.text)
                    await events.put(event)
            except _Stalled as stall:
                sc.mark_outcome(span, "DEADLINE_EXCEEDED", str(stall))
                self.planner.breakers.record_failure(cand.node_id)
                if not committed:
                    attempts.fail(cand, str(stall), grpc.StatusCode.UNAVAILABLE)
                    return None
                log.warning("stream %s from %s: %s", state.request_id, cand.node_id, stall)
                await events.put(
                    UpstreamUnavailable(
                        f"the upstream stream from {cand.node_id} stalled after the first token",
                        metadata={"node": cand.node_id, "model": cand.model},
                    )
                )
                return _StreamEnd("UNAVAILABLE", committed=True)
            except grpc.aio.AioRpcError as err:
                sc.mark_outcome(span, err.code().name, err.details() or "")
                if not committed and err.code() in _FALLBACK_CODES:
                    self._node_failed(cand, err.code(), err.code().name, attempts)
                    attempts.retry_after_s = max(attempts.retry_after_s, _retry_after(err))
                    return None
                if err.code() in _NODE_FAULT_CODES:
                    self.planner.breakers.record_failure(cand.node_id)
                if committed:
                    log.warning(
                        "stream %s from %s failed after the commit point: %s",
                        state.request_id,
                        cand.node_id,
                        err.code().name,
                    )
                await events.put(err)
                return _StreamEnd(err.code().name, committed=committed)
            finally:
                call.cancel()  # no-op when finished; aborts the node's generation otherwise

    async def _next_event(
        self, call: Any, state: _Request, committed: bool
    ) -> inference_pb2.GenerateStreamResponse | None:
        """The next upstream event (None at the end), within the first-token or idle timeout."""
        limit = self.settings.idle_timeout_s if committed else self.settings.first_token_timeout_s
        remaining = self._remaining(state)
        if limit is None or limit >= remaining:
            event = await call.read()
        else:
            try:
                event = await asyncio.wait_for(call.read(), limit)
            except TimeoutError:
                what = "no event" if committed else "no first token"
                raise _Stalled(f"{what} within {limit:g}s") from None
        if event is grpc.aio.EOF:
            return None
        return event  # type: ignore[no-any-return]

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: Context
    ) -> inference_pb2.ListModelsResponse:
        load = types_pb2.NodeLoad()
        for entry in self.planner.catalog.entries():
            if entry.healthy:
                load.running += entry.load.running
                load.waiting += entry.load.waiting
                load.max_inflight += entry.load.max_inflight
        healthy = [c for c in self.planner.candidates() if c.healthy]
        return inference_pb2.ListModelsResponse(
            node_id=self.router_id, models=iter_cards(healthy), load=load
        )


def _retry_after(err: grpc.aio.AioRpcError) -> float:
    """RetryInfo's delay from an upstream error, 0 when it carries none."""
    return error_details(err).retry_after_s or 0.0


def _replay(
    request_id: str, hit: CacheHit, route: types_pb2.RouteInfo, usage: types_pb2.Usage
) -> list[inference_pb2.GenerateStreamResponse]:
    """A cached answer as a stream: word-aligned chunks, then the summary."""
    events, text, start = [], hit.text, 0
    while start < len(text):
        end = min(start + _REPLAY_CHUNK_CHARS, len(text))
        space = text.rfind(" ", start + 1, end) if end < len(text) else -1
        end = space if space > start else end
        events.append(
            inference_pb2.GenerateStreamResponse(
                delta=inference_pb2.TextDelta(text=text[start:end])
            )
        )
        start = end
    summary = inference_pb2.GenerationSummary(
        request_id=request_id,
        finish_reason=hit.finish_reason,  # type: ignore[arg-type]
        usage=usage,
        route=route,
        model=hit.model,
    )
    events.append(inference_pb2.GenerateStreamResponse(summary=summary))
    return events


def _log_cache_failure(task: asyncio.Future[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("cache write failed: %s", task.exception())

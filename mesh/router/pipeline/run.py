"""The router's request path: input guards -> plan -> cache -> forward -> output guards -> settle.

One pipeline serves unary calls and streams, and every door (the gRPC servicer, an HTTP front)
calls it with a RequestContext built at its edge. In order:

1. input guards (`input_guards.py`): the policy's input chain; a block ends the request here, a
   redaction rewrites it. With the policy's `parallel_input`, steps 2-4 start beside it and
   nothing is released before the verdict (a redaction restarts them on the redacted request).
2. exact cache (`cache_lookup.py`): a repeated conversation is answered before any estimate.
3. plan (`plan.py`): the policy, the tier estimate (only if the policy uses it), the semantic
   cache tier, then the ordered candidates and the budget hold.
4. forward (`forward.py`): the one candidate loop up to the commit point.
5. output guards (`output_guards.py`): the reply, or a hold-back window over the stream.
6. settle (`settle.py`): cost, budget, ledger, cache write after an allowing verdict, RouteInfo.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry.trace import Span, Tracer

from guards.guarded_request import blocked_error
from guards.verdict import GuardOutcome
from mesh.contract.errors import UpstreamUnavailable
from mesh.router.accounting import Accounting
from mesh.router.cache import CacheHit
from mesh.router.pipeline.attempts import Attempts
from mesh.router.pipeline.cache_lookup import CacheLookup
from mesh.router.pipeline.context import RequestContext
from mesh.router.pipeline.forward import Forwarder, Upstream
from mesh.router.pipeline.input_guards import InputGuards
from mesh.router.pipeline.output_guards import OutputGuards
from mesh.router.pipeline.plan import Planner
from mesh.router.pipeline.settle import Settle
from mesh.router.policies import RoutingPolicy
from mesh.telemetry import semconv as sc
from mesh.v1 import inference_pb2, types_pb2

_REPLAY_CHUNK_CHARS = 48
_T = TypeVar("_T")
_R = TypeVar("_R")
_BLOCKED = types_pb2.FINISH_REASON_GUARD_BLOCKED


@dataclass(eq=False)
class Routed:
    """Where steps 2-4 got to: a cache hit, or an upstream that committed."""

    span: Span  # the `route <policy>` span, ended by the pipeline
    policy: RoutingPolicy
    hit: CacheHit | None = None
    upstream: Upstream | None = None

    def discard(self, exc: BaseException | None = None) -> None:
        """Cancel a live upstream call and end the spans (once)."""
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        if self.span is not None:
            sc.end_span(self.span, exc)
            self.span = None  # type: ignore[assignment]


class Pipeline:
    """The stages, wired once per router; `generate` and `stream` run one request each."""

    def __init__(
        self,
        *,
        input_guards: InputGuards,
        planner: Planner,
        cache: CacheLookup,
        forwarder: Forwarder,
        settle: Settle,
        accounting: Accounting,
        tracer: Tracer | None,
    ) -> None:
        self.input_guards = input_guards
        self.planner = planner
        self.cache = cache
        self.forwarder = forwarder
        self.settle = settle
        self.accounting = accounting
        self.tracer = tracer

    # -- steps 1-4 --------------------------------------------------------------------------
    async def _route(self, ctx: RequestContext) -> Routed:
        """Exact cache, plan, semantic cache, decision, then forward to the commit point."""
        request = ctx.request
        policy = self.planner.policy_for(ctx.tenant, request.routing)
        span = sc.start_route_span(
            self.tracer, policy.name, request_id=ctx.request_id, tenant=ctx.tenant
        )
        routed = Routed(span, policy)
        try:
            version = ctx.guards.version if ctx.guards else ""
            tiers = self.planner.catalog.tiers()  # read once: the exact scope and the plan
            routed.hit = self.cache.exact(ctx, policy, version, max(tiers, default=0))
            if routed.hit is not None:
                ctx.cache_hit = routed.hit
                return routed
            ctx.plan = plan = await self.planner.plan(
                ctx.tenant, policy, request.messages, request.sampling, request.routing, tiers
            )
            routed.hit = await self.cache.semantic(ctx, plan)
            if routed.hit is not None:
                ctx.cache_hit = routed.hit
                return routed
            key = ctx.cache_key
            if key is not None and key.vetoed:  # near matches that asked another question
                sc.record_cache_lookup(span, kind="miss", verification=key.veto, vetoed=key.vetoed)
            ctx.decision = decision = self.planner.decide(plan)
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
            ctx.hold = await self.accounting.hold(ctx.tenant, decision.estimated_cost_usd)
            ctx.attempts = Attempts()
            forward = self.forwarder.stream if ctx.stream else self.forwarder.unary
            routed.upstream = await forward(ctx, span)
            return routed
        except BaseException as exc:
            self.settle.abandoned(ctx, committed=False)
            sc.end_span(span, exc)
            raise

    async def _admit(self, ctx: RequestContext) -> Routed:
        """Step 1, then steps 2-4 after it or, with `parallel_input`, beside it."""
        self.input_guards.open(ctx)
        if not InputGuards.parallel(ctx):
            InputGuards.apply(ctx, await InputGuards.check(ctx))
            return await self._route(ctx)
        return await _gated(
            InputGuards.check(ctx),
            lambda: self._route(ctx),
            lambda result: InputGuards.apply(ctx, result),
            lambda routed: self._discard(ctx, routed),
        )

    def _discard(self, ctx: RequestContext, routed: Routed) -> None:
        """Work started on input the guards then rejected or rewrote: stop it, owe nothing."""
        routed.discard()
        self.settle.abandoned(ctx, committed=False)

    # -- unary ------------------------------------------------------------------------------
    async def generate(self, ctx: RequestContext) -> inference_pb2.GenerateResponse:
        status, route = "UNKNOWN", None
        routed: Routed | None = None
        failure: BaseException | None = None
        try:
            routed = await self._admit(ctx)
            hit, upstream = routed.hit, routed.upstream
            if hit is not None:
                reply = inference_pb2.GenerateResponse(
                    request_id=ctx.request_id,
                    text=hit.text,
                    finish_reason=hit.finish_reason,  # type: ignore[arg-type]
                    model=hit.model,
                )
            else:
                assert upstream is not None
                reply = upstream.first
            out = await OutputGuards.check(ctx, reply.text)
            allowed = out is None or not out.blocked
            if hit is not None:
                route, usage = self.settle.cache_hit(ctx, hit, routed.policy.name, routed.span)
                reply.usage.CopyFrom(usage)
                reply.route.CopyFrom(route)
            else:
                assert upstream is not None
                route = await self.settle.answered(
                    ctx, upstream, reply, reply.text, allowed=allowed, route_span=routed.span
                )
            if out is not None:
                if out.blocked:
                    raise blocked_error(out, "response")
                reply.text = out.text
            reply.guard_verdicts.extend(OutputGuards.verdicts(ctx, out.outcomes if out else ()))
            status = "OK"
            return reply  # type: ignore[no-any-return]
        except BaseException as exc:
            status, failure = sc.code_of(exc), exc
            raise
        finally:
            self._end(ctx, routed, status, route, committed=False, failure=failure)

    # -- streaming --------------------------------------------------------------------------
    async def stream(
        self, ctx: RequestContext
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        status, route = "UNKNOWN", None
        routed: Routed | None = None
        failure: BaseException | None = None
        committed = False
        try:
            routed = await self._admit(ctx)
            if routed.hit is not None:
                async for replayed in self._replay(ctx, routed, routed.hit):
                    yield replayed
                status = "OK"
                return
            upstream = routed.upstream
            assert upstream is not None
            committed = True
            window = OutputGuards.window(ctx)
            parts: list[str] = []
            event: inference_pb2.GenerateStreamResponse | None = upstream.first
            while event is not None:
                if event.HasField("summary"):
                    summary = event.summary
                    if window is not None:
                        step = await window.finish()
                        if step.text:
                            yield _delta(step.text)
                        if window.blocked:
                            summary.finish_reason = _BLOCKED
                        await OutputGuards.audit_stream(ctx, window)
                    allowed = window is None or not window.blocked
                    route = await self.settle.answered(
                        ctx,
                        upstream,
                        summary,
                        "".join(parts),
                        allowed=allowed,
                        route_span=routed.span,
                    )
                    summary.guard_verdicts.extend(
                        OutputGuards.verdicts(ctx, window.outcomes if window else ())
                    )
                    status = "OK"
                    yield event
                    await upstream.finish()  # to the node's OK status: no cancel after a summary
                    return
                text = event.delta.text
                parts.append(text)
                if window is None:
                    yield event
                else:
                    step = await window.push(text)
                    if step.text:
                        yield event if step.text == text else _delta(step.text)
                    if step.blocked:
                        upstream.close()  # abort first: when the caller sees the end, nothing runs
                        await OutputGuards.audit_stream(ctx, window)
                        yield self._blocked_summary(ctx, upstream, routed, window.outcomes)
                        status = "OK"
                        return
                event = await self.forwarder.next_event(ctx, upstream)
            raise UpstreamUnavailable(
                f"{upstream.cand.node_id} ended its stream without a summary",
                metadata={"node": upstream.cand.node_id, "model": upstream.cand.model},
            )
        except BaseException as exc:
            if status != "OK":
                status = "CANCELLED" if isinstance(exc, GeneratorExit) else sc.code_of(exc)
                failure = exc
            raise
        finally:
            self._end(ctx, routed, status, route, committed=committed, failure=failure)

    def _blocked_summary(
        self,
        ctx: RequestContext,
        upstream: Upstream,
        routed: Routed,
        outcomes: Sequence[GuardOutcome],
    ) -> inference_pb2.GenerateStreamResponse:
        """The end of a stream the output guards stopped: charged as generated, never cached."""
        route = self.settle.blocked(ctx, upstream, routed.span)
        summary = inference_pb2.GenerationSummary(
            request_id=ctx.request_id,
            finish_reason=_BLOCKED,
            route=route,
            model=upstream.cand.model,
        )
        summary.usage.cost_usd = route.estimated_cost_usd
        summary.guard_verdicts.extend(OutputGuards.verdicts(ctx, outcomes))
        return inference_pb2.GenerateStreamResponse(summary=summary)

    async def _replay(
        self, ctx: RequestContext, routed: Routed, hit: CacheHit
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        """A cached answer as a stream, checked whole by the output guards first."""
        out = await OutputGuards.check(ctx, hit.text)
        text = hit.text if out is None else "" if out.blocked else out.text
        route, usage = self.settle.cache_hit(ctx, hit, routed.policy.name, routed.span)
        for chunk in _chunks(text):
            yield _delta(chunk)
        summary = inference_pb2.GenerationSummary(
            request_id=ctx.request_id,
            finish_reason=_BLOCKED if out is not None and out.blocked else hit.finish_reason,  # type: ignore[arg-type]
            usage=usage,
            route=route,
            model=hit.model,
        )
        summary.guard_verdicts.extend(OutputGuards.verdicts(ctx, out.outcomes if out else ()))
        yield inference_pb2.GenerateStreamResponse(summary=summary)

    # -- the end of every request -----------------------------------------------------------
    def _end(
        self,
        ctx: RequestContext,
        routed: Routed | None,
        status: str,
        route: types_pb2.RouteInfo | None,
        *,
        committed: bool,
        failure: BaseException | None,
    ) -> None:
        if routed is not None:
            routed.discard(failure)  # cancels a live upstream call, ends the spans
        self.settle.abandoned(ctx, committed=committed)  # no-op once settled
        self.settle.count(ctx, status, route)


async def _gated(
    check: Awaitable[_R],
    work: Callable[[], Awaitable[_T]],
    apply: Callable[[_R], bool],
    discard: Callable[[_T], None],
) -> _T:
    """Run `work` beside `check`; return its result only once `apply(verdict)` allowed it.

    Whichever finishes first, a block never waits for `work` (a long prefill). When `apply`
    rewrote the request, `work` is discarded and run again on the rewritten one.
    """
    verdict = asyncio.ensure_future(check)
    running = asyncio.ensure_future(work())
    try:
        await asyncio.wait({verdict, running}, return_when=asyncio.FIRST_COMPLETED)
        rewritten = apply(await verdict)
    except BaseException:
        await _stop(running, discard)
        verdict.cancel()
        raise
    if not rewritten:
        return await running
    await _stop(running, discard)
    return await work()


async def _stop(running: asyncio.Future[_T], discard: Callable[[_T], None]) -> None:
    """Cancel unfinished work; discard finished work's result (its errors are moot now)."""
    if not running.done():
        running.cancel()
    await asyncio.wait({running})  # our own cancellation still propagates
    if not running.cancelled() and running.exception() is None:
        discard(running.result())


def _delta(text: str) -> inference_pb2.GenerateStreamResponse:
    return inference_pb2.GenerateStreamResponse(delta=inference_pb2.TextDelta(text=text))


def _chunks(text: str) -> list[str]:
    """Word-aligned chunks of a cached answer."""
    out, start = [], 0
    while start < len(text):
        end = min(start + _REPLAY_CHUNK_CHARS, len(text))
        space = text.rfind(" ", start + 1, end) if end < len(text) else -1
        end = space if space > start else end
        out.append(text[start:end])
        start = end
    return out

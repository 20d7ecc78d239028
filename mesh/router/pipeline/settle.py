"""Settle stage: what an answer cost, who pays, what is remembered, and how it is explained.

Runs once per request after the output verdict: cost from the node's real usage, the budget hold
replaced by that cost, one ledger row, the cache written only if the output guards let the answer
through and it is complete, the policy told who served (prefix affinity), metrics, and the
RouteInfo every response carries. A request that ends without an answer gives its hold back,
unless tokens were already generated past the commit point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from opentelemetry.trace import Span

from mesh.config import tier_name
from mesh.router.accounting import Accounting
from mesh.router.cache import CacheHit, Outcome, ResponseCache
from mesh.router.catalog import Candidate
from mesh.router.ledger import LedgerRow
from mesh.router.pipeline.context import RequestContext
from mesh.router.pipeline.forward import Upstream
from mesh.telemetry import semconv as sc
from mesh.telemetry.metrics import ROLE_ROUTER, MeshMetrics
from mesh.v1 import types_pb2

log = logging.getLogger(__name__)
_COMPLETE = (types_pb2.FINISH_REASON_STOP, types_pb2.FINISH_REASON_LENGTH)
_FINISH_NAMES = {
    types_pb2.FINISH_REASON_STOP: "stop",
    types_pb2.FINISH_REASON_LENGTH: "length",
    types_pb2.FINISH_REASON_ABORTED: "aborted",
    types_pb2.FINISH_REASON_GUARD_BLOCKED: "guard_blocked",
}


class Settle:
    """Money, memory and explanation for finished requests."""

    def __init__(
        self,
        accounting: Accounting,
        cache: ResponseCache | None,
        metrics: MeshMetrics | None,
    ) -> None:
        self.accounting = accounting
        self.cache = cache
        self.metrics = metrics
        self._writes: set[asyncio.Task[bool]] = set()

    # -- answered by a node -----------------------------------------------------------------
    def answered(
        self,
        ctx: RequestContext,
        upstream: Upstream,
        result: Any,  # GenerateResponse or GenerationSummary: usage, model, finish_reason
        text: str,
        *,
        allowed: bool,
        route_span: Span,
    ) -> types_pb2.RouteInfo:
        """Settle a request a node answered; returns its RouteInfo (also set on `result`)."""
        used, usage = upstream.cand, result.usage
        sc.record_usage(
            upstream.span,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            response_model=result.model,
            finish_reasons=[_FINISH_NAMES.get(result.finish_reason, "unknown")],
            response_id=result.request_id,
        )
        usage.cost_usd = self.accounting.cost(used.card, usage)
        route = self._route_info(ctx, used, usage)
        if ctx.hold is not None:
            self.accounting.settle(ctx.hold, usage.cost_usd)
            ctx.hold = None
        self._ledger(ctx, route, usage)
        plan, decision = ctx.plan, ctx.decision
        assert plan is not None and decision is not None
        plan.policy.served(plan.route_request, used.node_id, used is not decision.chosen)
        if allowed and result.finish_reason in _COMPLETE:
            self._cache_write(ctx, text, usage, used, result.finish_reason)
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
            route_span, attempts=route.attempts, actual_cost_usd=usage.cost_usd, node=used.node_id
        )
        self._observe(used, result, upstream)
        result.route.CopyFrom(route)
        return route

    def _route_info(
        self, ctx: RequestContext, used: Candidate, usage: types_pb2.Usage
    ) -> types_pb2.RouteInfo:
        decision, attempts = ctx.decision, ctx.attempts
        assert decision is not None and attempts is not None
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

    def _cache_write(
        self,
        ctx: RequestContext,
        text: str,
        usage: types_pb2.Usage,
        used: Candidate,
        finish_reason: int,
    ) -> None:
        cache, key = self.cache, ctx.cache_key
        if cache is None or key is None:
            return
        # Off the request's path: embedding a new entry may take milliseconds.
        task = asyncio.ensure_future(
            cache.aput(
                key,
                text,
                usage,
                outcome=Outcome.COMPLETE,
                model=used.model,
                node_id=used.node_id,
                finish_reason=finish_reason,
                tier=used.tier,
            )
        )
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[bool]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cache write failed: %s", task.exception())

    async def drain(self) -> None:
        """Wait for cache writes still running (tests, shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _observe(self, cand: Candidate, result: Any, upstream: Upstream) -> None:
        if self.metrics is None:
            return
        provider = cand.card.provider or "self-hosted"
        self.metrics.record_tokens(
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            provider=provider,
            request_model=cand.model,
            response_model=result.model or cand.model,
            node=cand.node_id,
            role=ROLE_ROUTER,
        )
        self.metrics.record_operation_duration(
            time.perf_counter() - upstream.started,
            provider=provider,
            request_model=cand.model,
            response_model=result.model,
            node=cand.node_id,
            role=ROLE_ROUTER,
        )
        self.metrics.add_cost(
            result.usage.cost_usd, model=cand.model, node=cand.node_id, provider=provider
        )

    # -- answered from the cache ------------------------------------------------------------
    def cache_hit(
        self, ctx: RequestContext, hit: CacheHit, policy: str, route_span: Span
    ) -> tuple[types_pb2.RouteInfo, types_pb2.Usage]:
        """RouteInfo and usage of a replayed answer (it cost nothing; its saving is recorded)."""
        usage = types_pb2.Usage()
        usage.CopyFrom(hit.usage)
        usage.cost_usd = 0.0
        checked = ""
        if hit.kind == "semantic":  # how the near match was checked to ask the same question
            checked = f", {hit.verification}"
            checked += f", {hit.vetoed} nearer vetoed" if hit.vetoed else ""
        route = types_pb2.RouteInfo(
            node_id=hit.node_id,
            model=hit.model,
            provider="cache",
            policy=policy,
            reason=(
                f"cache hit ({hit.kind}, similarity {hit.similarity:.3f}{checked}, "
                f"age {hit.age_s:.0f}s): answer first generated by {hit.model} on {hit.node_id}"
            ),
            attempts=0,
            cache_hit=True,
            estimated_cost_usd=0.0,
            baseline_cost_usd=self.accounting.baseline_cost(hit.usage),
            tier=hit.tier,  # type: ignore[arg-type]
        )
        sc.record_route(
            route_span,
            node=hit.node_id,
            model=hit.model,
            provider="cache",
            reason=route.reason,
            cache_hit=True,
            baseline_cost_usd=route.baseline_cost_usd,
        )
        sc.record_cache_lookup(
            route_span,
            kind=hit.kind,
            similarity=hit.similarity,
            verification=hit.verification or None,
            vetoed=hit.vetoed,
        )
        self._ledger(ctx, route, usage)
        return route, usage

    def blocked(
        self, ctx: RequestContext, upstream: Upstream, route_span: Span
    ) -> types_pb2.RouteInfo:
        """A stream the output guards stopped mid-way: the node never reported usage, so the
        hold (the estimate) is charged and recorded; nothing is cached."""
        charged = ctx.hold.amount_usd if ctx.hold is not None else 0.0
        self.abandoned(ctx, committed=True)
        usage = types_pb2.Usage(cost_usd=charged)
        route = self._route_info(ctx, upstream.cand, usage)
        route.reason += "; stopped by the output guards"
        self._ledger(ctx, route, usage)
        sc.record_route_result(
            route_span,
            attempts=route.attempts,
            actual_cost_usd=charged,
            node=upstream.cand.node_id,
        )
        return route

    # -- not answered -----------------------------------------------------------------------
    def abandoned(self, ctx: RequestContext, committed: bool) -> None:
        """A request that ended without an answer: give its hold back, or keep it when tokens
        were generated past the commit point (charge the hold, never less)."""
        if ctx.hold is not None:
            self.accounting.settle(ctx.hold, ctx.hold.amount_usd if committed else 0.0)
            ctx.hold = None

    def count(self, ctx: RequestContext, status: str, route: types_pb2.RouteInfo | None) -> None:
        if self.metrics is None:
            return
        self.metrics.count_request(
            status=status,
            model=route.model if route is not None else None,
            node=route.node_id if route is not None else None,
            policy=ctx.plan.policy.name if ctx.plan is not None else None,
            role=ROLE_ROUTER,
        )

    def _ledger(
        self, ctx: RequestContext, route: types_pb2.RouteInfo, usage: types_pb2.Usage
    ) -> None:
        tier = ctx.plan.route_request.needed_tier if ctx.plan is not None else route.tier
        self.accounting.record(
            LedgerRow(
                request_id=ctx.request_id,
                tenant=ctx.tenant,
                node_id=route.node_id,
                model=route.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
                baseline_cost_usd=route.baseline_cost_usd,
                cache_hit=route.cache_hit,
                policy=route.policy,
                attempts=route.attempts,
                guard_policy_version=ctx.guards.version if ctx.guards is not None else "",
                estimated_cost_usd=route.estimated_cost_usd,
                tier=tier_name(tier),
            )
        )

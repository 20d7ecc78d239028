"""Cache stage: the exact tier before planning, the semantic tier after it.

The exact tier is a hash lookup (microseconds), so a repeated prompt is answered before any
tier estimate or embedding. Its scope is the routing policy, the hints and the catalogue's best
tier rather than the estimated tier: the same conversation under the same policy is always
estimated the same, and routed the same while the catalogue's best tier stays. The semantic
tier needs the estimated tier (a paraphrase may only reuse an answer routed to the same tier)
and the task's vector (static by default: the static table's memo answers the estimator's
ask and the cache's with one computation; MiniLM's worker memo with `embeddings.static: false`).
Lookups run on the redacted conversation, after the input guards.
"""

from __future__ import annotations

from mesh.router.cache import CacheHit, CacheScope, ResponseCache
from mesh.router.pipeline.context import RequestContext
from mesh.router.pipeline.plan import Plan
from mesh.router.policies import RoutingPolicy
from mesh.telemetry.metrics import MeshMetrics
from mesh.v1 import types_pb2

_BYPASS = types_pb2.CACHE_MODE_BYPASS
_REFRESH = types_pb2.CACHE_MODE_REFRESH


class CacheLookup:
    """Builds each request's cache key and consults the two tiers."""

    def __init__(self, cache: ResponseCache | None, metrics: MeshMetrics | None) -> None:
        self.cache = cache
        self.metrics = metrics

    def exact(
        self, ctx: RequestContext, policy: RoutingPolicy, policy_version: str, top_tier: int = 0
    ) -> CacheHit | None:
        """Key the request and try the exact tier (no hit under BYPASS or REFRESH).

        A routed (not pinned) request's scope names the catalogue's best tier: an answer given
        while the best model was a small one is not replayed once a stronger one has joined,
        when the same request would be routed to it."""
        cache = self.cache
        request = ctx.request
        mode = request.routing.cache
        if cache is None or mode == _BYPASS:
            return None
        if sum(len(m.content) for m in request.messages) > cache.settings.max_exact_chars:
            return None  # not cached at all: keying it would cost more than a repeat saves
        target = f"policy:{policy.name}|{policy.pinned_model}|{int(request.routing.min_tier)}"
        if not policy.pinned_model:
            target += f"|top:{top_tier}"
        scope = CacheScope.build(ctx.tenant, policy_version, target, request.sampling)
        ctx.cache_key = cache.key(scope, request.messages)
        if mode == _REFRESH:
            return None
        hit = cache.get_exact(ctx.cache_key)
        if hit is not None:
            self._count(hit)
        return hit

    async def semantic(self, ctx: RequestContext, plan: Plan) -> CacheHit | None:
        """The semantic tier, scoped to the planned tier or pinned model."""
        key = ctx.cache_key
        if self.cache is None or key is None:
            return None
        key.semantic_target = plan.cache_target
        if ctx.request.routing.cache == _REFRESH:
            return None
        hit = await self.cache.aget_semantic(key)
        self._count(hit)
        return hit

    def _count(self, hit: CacheHit | None) -> None:
        if self.metrics is not None:
            self.metrics.count_cache_lookup(
                hit=hit is not None,
                kind=hit.kind if hit else "miss",
                saved_usd=hit.saved_cost_usd if hit else None,
            )

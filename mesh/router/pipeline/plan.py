"""Plan stage: which policy, which tier, then which candidates in which order.

`plan` picks the policy and, only when the policy uses it and the catalogue's tiers let an
estimate change the decision (`routes_alike`), estimates the tier (a model learned
from public data: a static model first, on the loop in ~0.1 ms, and MiniLM's where the static
estimate is near a bound, its embedding on the shared embedder's worker thread so the event
loop never waits on it; the estimator itself is built the first time an estimate can matter,
estimator_loader.py). `decide` orders the routing table's candidates. They are apart because
the exact cache tier is consulted between them: a repeated prompt is served before any
estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.config import tier_name
from mesh.contract.errors import FieldViolation, InvalidRequest, UpstreamUnavailable
from mesh.router.breaker import BreakerBoard
from mesh.router.catalog import Candidate, Catalog
from mesh.router.decision import RouteDecision, RouteRequest, routes_alike
from mesh.router.estimator_loader import EstimatorLoader
from mesh.router.policies import PolicySet, RoutingPolicy
from mesh.router.tier_estimate import TierEstimate
from mesh.v1 import types_pb2

_KNOWN_TIERS = frozenset(types_pb2.ModelTier.values())


@dataclass(frozen=True)
class Plan:
    """What the router knows about a request before any upstream call."""

    tenant: str
    policy: RoutingPolicy
    route_request: RouteRequest
    top_tier: int = 0  # the best tier in the catalogue when planned (0: none known)

    @property
    def cache_target(self) -> str:
        """What a cached answer must have been routed to: the pinned model, or the tier the
        decision can reach. A frontier estimate in a catalogue whose best is medium is served
        by a medium model, so its answer is a medium answer: were it filed under frontier, a
        frontier request would get it once a frontier model joins."""
        if self.policy.pinned_model:
            return f"model:{self.policy.pinned_model}"
        request = self.route_request
        tier = request.tier_within(self.top_tier) if self.top_tier else request.needed_tier
        return f"tier:{tier_name(tier)}"


class Planner:
    """Policies, the tier estimator and the routing table, behind three calls."""

    def __init__(
        self,
        catalog: Catalog,
        breakers: BreakerBoard,
        policies: PolicySet,
        estimator: EstimatorLoader | None,
    ) -> None:
        self.catalog = catalog
        self.breakers = breakers
        self.policies = policies
        self.estimator = estimator

    def policy_for(self, tenant: str, hints: types_pb2.RoutingHints) -> RoutingPolicy:
        """The policy a request runs under (cheap: no estimate); checks the hints first."""
        if int(hints.min_tier) not in _KNOWN_TIERS:
            raise InvalidRequest(
                f"routing.min_tier {int(hints.min_tier)} is not a known tier",
                violations=[FieldViolation("routing.min_tier", "must be a ModelTier value")],
            )
        return self.policies.for_request(tenant, hints)

    async def plan(
        self,
        tenant: str,
        policy: RoutingPolicy,
        messages: list[types_pb2.ChatMessage] | object,
        sampling: types_pb2.SamplingParams,
        hints: types_pb2.RoutingHints,
        tiers: frozenset[int] | None = None,
    ) -> Plan:
        """Estimate the tier when the policy needs it and the catalogue's `tiers` (read now
        unless given) let it matter; no candidate is looked at yet."""
        settings = self.policies.settings
        max_tokens = (
            sampling.max_tokens if sampling.HasField("max_tokens") else settings.default_max_tokens
        )
        min_tier = max(int(hints.min_tier), self.policies.min_tier(policy))
        estimate: TierEstimate | None = None
        unestimated = ""
        tiers = self.catalog.tiers() if tiers is None else tiers
        if policy.needs_estimate and self.estimator is not None:
            if routes_alike(tiers, min_tier):
                unestimated = (
                    "every tier routes alike in this catalogue ("
                    + ", ".join(tier_name(t) for t in sorted(tiers))
                    + (f"; min_tier {tier_name(min_tier)})" if min_tier else ")")
                )
            else:
                estimator = self.estimator.loaded or await self.estimator.get()
                estimate = await estimator.aestimate(messages, min_tier)  # type: ignore[arg-type]
        route_hints = hints
        if min_tier != int(hints.min_tier):
            route_hints = types_pb2.RoutingHints()
            route_hints.CopyFrom(hints)
            route_hints.min_tier = min_tier  # type: ignore[assignment]
        request = RouteRequest(
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            hints=route_hints,
            estimate=estimate,
            allow_external_default=settings.allow_external,
            unestimated_because=unestimated,
        )
        return Plan(tenant, policy, request, max(tiers, default=0))

    def candidates(self) -> list[Candidate]:
        """Every (node, model) in the table; an open breaker or an ejection counts as unhealthy."""
        return self.catalog.candidates(available=self.breakers.available)

    def decide(self, plan: Plan) -> RouteDecision:
        """The ordered candidates (raises NoRoute / ModelNotFound when there are none)."""
        candidates = self.candidates()
        if not candidates:
            known = len(self.catalog)
            raise UpstreamUnavailable(
                "no node can take requests: "
                + (f"none of {known} known node(s) has answered" if known else "none registered"),
                metadata={"nodes": str(known)},
            )
        return plan.policy.decide(plan.route_request, candidates)

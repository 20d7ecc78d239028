"""From one request to a route: which policy, which tier, which candidates in which order.

The tier estimate (features plus nearest exemplars in MiniLM space) embeds on the shared
embedder's worker thread, so the event loop never waits on MiniLM. A pin skips the estimate:
the caller chose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mesh.config import tier_name
from mesh.contract.errors import UpstreamUnavailable
from mesh.router.breaker import BreakerBoard
from mesh.router.catalog import Candidate, Catalog
from mesh.router.policies import (
    PinnedPolicy,
    PolicySet,
    RouteDecision,
    RouteRequest,
    RoutingPolicy,
)
from mesh.router.tier_estimator import TierEstimate, TierEstimator
from mesh.v1 import types_pb2

CandidateFilter = Callable[[str], bool]


@dataclass(frozen=True)
class Plan:
    """What the router knows about a request before any upstream call."""

    tenant: str
    policy: RoutingPolicy
    route_request: RouteRequest

    @property
    def pinned(self) -> str:
        return self.policy.model if isinstance(self.policy, PinnedPolicy) else ""

    @property
    def cache_target(self) -> str:
        """What a cached answer must have been routed to: the pinned model, or the tier."""
        if self.pinned:
            return f"model:{self.pinned}"
        return f"tier:{tier_name(self.route_request.needed_tier)}"


class Planner:
    """Policies, the tier estimator and the routing table, behind two calls."""

    def __init__(
        self,
        catalog: Catalog,
        breakers: BreakerBoard,
        policies: PolicySet,
        estimator: TierEstimator | None,
    ) -> None:
        self.catalog = catalog
        self.breakers = breakers
        self.policies = policies
        self.estimator = estimator

    async def plan(
        self,
        tenant: str,
        messages: Sequence[types_pb2.ChatMessage],
        sampling: types_pb2.SamplingParams,
        hints: types_pb2.RoutingHints,
    ) -> Plan:
        """Choose the policy and estimate the tier (no candidate is looked at yet)."""
        policy = self.policies.for_request(tenant, hints)
        settings = self.policies.settings
        max_tokens = (
            sampling.max_tokens if sampling.HasField("max_tokens") else settings.default_max_tokens
        )
        min_tier = max(int(hints.min_tier), self.policies.min_tier(policy))
        estimate: TierEstimate | None = None
        if not isinstance(policy, PinnedPolicy) and self.estimator is not None:
            estimate = await self.estimator.aestimate(messages, min_tier)
        route_hints = hints
        if min_tier != int(hints.min_tier):
            route_hints = types_pb2.RoutingHints()
            route_hints.CopyFrom(hints)
            route_hints.min_tier = min_tier  # type: ignore[assignment]
        request = RouteRequest(
            messages=messages,
            max_tokens=max_tokens,
            hints=route_hints,
            estimate=estimate,
            allow_external_default=settings.allow_external,
        )
        return Plan(tenant, policy, request)

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

"""A route decision: what a policy needs to know about a request, the eligibility screen every
policy shares, and the ordered, explained result.

Every policy uses one eligibility filter (health, tier, context window, capabilities, external
allowed, max cost, latency SLO), so a candidate is rejected for the same reason whatever the
policy, and every rejection is written down: RouteInfo shows the caller why the others lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mesh.config import tier_name
from mesh.contract.errors import Code, MeshError, echo
from mesh.router.catalog import Candidate
from mesh.router.costs import estimate_cost, estimate_prompt_tokens
from mesh.router.tier_estimate import ESTIMATED_TIERS, TierEstimate
from mesh.v1 import types_pb2


@dataclass(frozen=True)
class RouteRequest:
    """What a policy needs to know about one request."""

    messages: Sequence[types_pb2.ChatMessage]
    max_tokens: int
    hints: types_pb2.RoutingHints = field(default_factory=types_pb2.RoutingHints)
    estimate: TierEstimate | None = None
    allow_external_default: bool = True
    prompt_tokens: int = -1  # -1: estimated from messages
    # Why no estimate was made although the policy uses one (see `routes_alike`).
    unestimated_because: str = ""

    @property
    def prompt_token_estimate(self) -> int:
        if self.prompt_tokens >= 0:
            return self.prompt_tokens
        return estimate_prompt_tokens(self.messages)

    @property
    def needed_tier(self) -> int:
        estimated = self.estimate.tier if self.estimate else types_pb2.MODEL_TIER_SMALL
        return max(int(estimated), int(self.hints.min_tier))

    def tier_within(self, top: int) -> int:
        """The needed tier in a catalogue whose best tier is `top`: an estimate above what the
        mesh has asks for its best model; a caller's min_tier is never lowered."""
        estimated = self.estimate.tier if self.estimate else types_pb2.MODEL_TIER_SMALL
        return max(min(int(estimated), top), int(self.hints.min_tier))

    @property
    def allow_external(self) -> bool:
        if self.hints.HasField("allow_external"):
            return self.hints.allow_external
        return self.allow_external_default

    @property
    def latency_slo_ms(self) -> float:
        slo = self.hints.latency_slo
        return slo.seconds * 1000.0 + slo.nanos / 1e6


@dataclass(frozen=True)
class ScoredCandidate:
    """A candidate with its policy score (lower is better) and why it lost, if it did."""

    candidate: Candidate
    score: float
    estimated_cost_usd: float
    rejected_reason: str = ""

    @property
    def eligible(self) -> bool:
        return not self.rejected_reason


@dataclass(frozen=True)
class RouteDecision:
    """The chosen candidate, the fallback order, every candidate's score, and a reason line."""

    policy: str
    tier: int
    chosen: Candidate
    fallbacks: tuple[Candidate, ...]
    scored: tuple[ScoredCandidate, ...]  # eligible in order first, then the rejected
    reason: str
    estimated_cost_usd: float
    prompt_tokens: int

    @property
    def ordered(self) -> list[Candidate]:
        """Chosen first, then fallbacks: the order the servicer tries."""
        return [self.chosen, *self.fallbacks]

    def estimated_cost_for(self, candidate: Candidate) -> float:
        for sc in self.scored:
            if sc.candidate == candidate:
                return sc.estimated_cost_usd
        return self.estimated_cost_usd

    def route_candidates(self, used: Candidate | None = None) -> list[types_pb2.RouteCandidate]:
        """RouteInfo.candidates, marking `used` (default: the first choice) as chosen."""
        used = used or self.chosen
        out = []
        for sc in self.scored:
            chosen = sc.candidate == used
            reason = sc.rejected_reason
            if not chosen and not reason:
                reason = "fallback (lower priority)"
            out.append(
                types_pb2.RouteCandidate(
                    node_id=sc.candidate.node_id,
                    model=sc.candidate.model,
                    score=sc.score,
                    estimated_cost_usd=sc.estimated_cost_usd,
                    chosen=chosen,
                    rejected_reason="" if chosen else reason,
                )
            )
        return out


class NoRoute(MeshError):
    """No candidate can serve the request; metadata says why each one was rejected."""

    code = Code.FAILED_PRECONDITION
    reason = "NO_ROUTE"


# -- eligibility -----------------------------------------------------------------------------
def rejection(
    req: RouteRequest, cand: Candidate, *, check_tier: bool = True, needed: int | None = None
) -> str:
    """Why `cand` cannot serve `req`, or "" when it can (the latency SLO is checked apart).

    `needed` is the tier to check against (default: the request's needed tier).
    """
    card = cand.card
    need_tier = req.needed_tier if needed is None else needed
    if not cand.healthy:
        return "unhealthy"
    if check_tier and cand.tier < need_tier:
        return f"tier {tier_name(cand.tier)} below needed {tier_name(need_tier)}"
    need = req.prompt_token_estimate + req.max_tokens
    if card.context_window and need > card.context_window:
        return f"context window {card.context_window} < {need} tokens"
    missing = sorted(set(req.hints.require_capabilities) - set(card.capabilities))
    if missing:
        return f"lacks {', '.join(missing)}"
    if cand.external and not req.allow_external:
        return "external models not allowed"
    cost = estimate_cost(card, req.prompt_token_estimate, req.max_tokens)
    if req.hints.max_cost_usd > 0 and cost > req.hints.max_cost_usd:
        return f"estimated ${cost:.6f} over max_cost ${req.hints.max_cost_usd:g}"
    return ""


def ttft(cand: Candidate, unknown_ttft_ms: float) -> float:
    return cand.load.ewma_ttft_ms if cand.load.ewma_ttft_ms > 0 else unknown_ttft_ms


def load_score(load: types_pb2.NodeLoad) -> float:
    """Queue pressure: running and (heavier) waiting requests per admitted slot, plus KV use."""
    slots = max(load.max_inflight, 1) if load.max_inflight else 32
    return (load.running + 2.0 * load.waiting) / slots + load.kv_cache_usage


def is_full(load: types_pb2.NodeLoad) -> bool:
    """A node that would queue or evict: prefix reuse is not worth waiting for."""
    at_limit = load.max_inflight > 0 and load.running + load.waiting >= load.max_inflight
    return at_limit or load.kv_cache_usage >= 0.95


def routes_alike(tiers: frozenset[int], min_tier: int) -> bool:
    """Whether every tier an estimate can name leaves the same candidates eligible in a
    catalogue of `tiers` (see `screen`): then no estimate can change the decision.

    True for a one-tier catalogue, or a min_tier at the top of it: the router then skips the
    estimator (MiniLM is most of a routed request's CPU where it runs). Never for an empty one.
    """
    if not tiers:
        return False
    top = max(tiers)
    needed = {max(min(t, top), min_tier) for t in ESTIMATED_TIERS}
    eligible = {frozenset(t for t in tiers if t >= n) for n in needed}
    return len(eligible) == 1


def screen(
    req: RouteRequest,
    candidates: Sequence[Candidate],
    unknown_ttft_ms: float,
    check_tier: bool = True,
) -> tuple[list[Candidate], list[ScoredCandidate]]:
    """Eligible candidates and the rejected ones (with reasons), the latency SLO included.

    The tier is checked against the best tier the catalogue has (healthy or not): a mesh with no
    frontier card serves frontier-estimated work on its best model, while a mesh whose frontier
    nodes are down still refuses rather than quietly sending it lower.
    """
    eligible, rejected = [], []
    top = max((c.tier for c in candidates), default=types_pb2.MODEL_TIER_FRONTIER)
    needed = req.tier_within(top)
    for cand in candidates:
        why = rejection(req, cand, check_tier=check_tier, needed=needed)
        if why:
            cost = estimate_cost(cand.card, req.prompt_token_estimate, req.max_tokens)
            rejected.append(ScoredCandidate(cand, float("inf"), cost, why))
        else:
            eligible.append(cand)
    slo = req.latency_slo_ms
    if slo > 0:
        fast = [c for c in eligible if ttft(c, unknown_ttft_ms) <= slo]
        if fast:  # the SLO is a preference: with nobody fast enough, the slow still serve
            for cand in eligible:
                if cand not in fast:
                    cost = estimate_cost(cand.card, req.prompt_token_estimate, req.max_tokens)
                    why = f"ttft {ttft(cand, unknown_ttft_ms):.0f} ms over SLO {slo:.0f} ms"
                    rejected.append(ScoredCandidate(cand, float("inf"), cost, why))
            eligible = fast
    return eligible, rejected


def no_route(req: RouteRequest, rejected: Sequence[ScoredCandidate]) -> NoRoute:
    if not rejected:
        return NoRoute("no nodes are registered", code=Code.UNAVAILABLE)
    all_unhealthy = all(r.rejected_reason == "unhealthy" for r in rejected)
    # Node ids and model names come from registrations: echoed, they are bounded like input.
    summary = "; ".join(
        f"{echo(r.candidate.node_id, 64)}/{echo(r.candidate.model, 64)}: {r.rejected_reason}"
        for r in rejected[:8]
    )
    return NoRoute(
        "no candidate can serve this request",
        code=Code.UNAVAILABLE if all_unhealthy else Code.FAILED_PRECONDITION,
        retryable=all_unhealthy,
        metadata={"needed_tier": tier_name(req.needed_tier), "rejected": summary},
    )


def _tier_clause(req: RouteRequest) -> str:
    """What the reason says about the tier: the estimate's evidence, a min_tier floor, or that
    no tier was estimated (a pinned model, a policy without the estimator): never a tier the
    prompt was not judged to be."""
    if req.estimate is not None:
        return f"tier {tier_name(req.needed_tier)}: {req.estimate.reason}"
    if req.unestimated_because:
        return f"tier not estimated: {req.unestimated_because}"
    if int(req.hints.min_tier) != types_pb2.MODEL_TIER_UNSPECIFIED:
        return f"tier {tier_name(req.needed_tier)} (min_tier)"
    return "tier not estimated"


def decided(
    name: str,
    req: RouteRequest,
    ranked: Sequence[tuple[Candidate, float]],
    rejected: Sequence[ScoredCandidate],
    why_chosen: str,
) -> RouteDecision:
    if not ranked:
        raise no_route(req, rejected)
    prompt = req.prompt_token_estimate
    scored = [
        ScoredCandidate(c, score, estimate_cost(c.card, prompt, req.max_tokens))
        for c, score in ranked
    ]
    chosen = scored[0]
    return RouteDecision(
        policy=name,
        tier=req.needed_tier,
        chosen=chosen.candidate,
        fallbacks=tuple(sc.candidate for sc in scored[1:]),
        scored=(*scored, *rejected),
        reason=f"{_tier_clause(req)}; {why_chosen}",
        estimated_cost_usd=chosen.estimated_cost_usd,
        prompt_tokens=prompt,
    )

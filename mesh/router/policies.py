"""Routing policies: which candidate serves a request, in what fallback order, and why.

Every policy shares one eligibility filter (health, tier, context window, capabilities, external
allowed, max cost, latency SLO) so a candidate is rejected for the same reason whatever the
policy, and every rejection is written down: RouteInfo shows the caller why the others lost.
A policy only orders the eligible candidates; the servicer walks that order on failure.
"""

from __future__ import annotations

import abc
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from mesh.config import BaselineSettings, PolicyConfig, RoutingSettings, field_default, tier_name
from mesh.contract.errors import Code, MeshError, ModelNotFound
from mesh.router.catalog import Candidate
from mesh.router.tier_estimator import TierEstimate
from mesh.v1 import types_pb2

_UNKNOWN_TTFT_MS: float = field_default(RoutingSettings, "unknown_ttft_ms")

CHARS_PER_TOKEN = 4  # English averages ~4 characters per token; no tokenizer on the hot path
TOKENS_PER_MESSAGE = 4  # chat-template overhead per turn


# -- money -----------------------------------------------------------------------------------
def estimate_prompt_tokens(messages: Sequence[types_pb2.ChatMessage]) -> int:
    """Cheap prompt-size estimate, deliberately rounded up so budgets err on the safe side."""
    return sum(-(-len(m.content) // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE for m in messages)


def price_cost(
    input_price_per_mtok: float, output_price_per_mtok: float, input_tokens: int, output_tokens: int
) -> float:
    return (input_tokens * input_price_per_mtok + output_tokens * output_price_per_mtok) / 1e6


def estimate_cost(card: types_pb2.ModelCard, prompt_tokens: int, max_tokens: int) -> float:
    """Pre-call estimate: the whole prompt plus max_tokens of output at the card's price."""
    return price_cost(
        card.input_price_per_mtok, card.output_price_per_mtok, prompt_tokens, max_tokens
    )


def actual_cost(card: types_pb2.ModelCard, usage: types_pb2.Usage) -> float:
    """Cost from reported usage; cached prompt tokens at the cached price when one is set."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = card.cached_input_price_per_mtok or card.input_price_per_mtok
    return (
        (usage.input_tokens - cached) * card.input_price_per_mtok
        + cached * cached_price
        + usage.output_tokens * card.output_price_per_mtok
    ) / 1e6


def baseline_cost(baseline: BaselineSettings, input_tokens: int, output_tokens: int) -> float:
    """What the configured premium baseline model would have charged."""
    return price_cost(
        baseline.input_price_per_mtok, baseline.output_price_per_mtok, input_tokens, output_tokens
    )


def _price_label(card: types_pb2.ModelCard) -> str:
    return f"${card.input_price_per_mtok:g}/M"


# -- request and decision --------------------------------------------------------------------
@dataclass(frozen=True)
class RouteRequest:
    """What a policy needs to know about one request."""

    messages: Sequence[types_pb2.ChatMessage]
    max_tokens: int
    hints: types_pb2.RoutingHints = field(default_factory=types_pb2.RoutingHints)
    estimate: TierEstimate | None = None
    allow_external_default: bool = True
    prompt_tokens: int = -1  # -1: estimated from messages

    @property
    def prompt_token_estimate(self) -> int:
        if self.prompt_tokens >= 0:
            return self.prompt_tokens
        return estimate_prompt_tokens(self.messages)

    @property
    def needed_tier(self) -> int:
        estimated = self.estimate.tier if self.estimate else types_pb2.MODEL_TIER_SMALL
        return max(int(estimated), int(self.hints.min_tier))

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
def rejection(req: RouteRequest, cand: Candidate, *, check_tier: bool = True) -> str:
    """Why `cand` cannot serve `req`, or "" when it can (the latency SLO is checked apart)."""
    card = cand.card
    if not cand.healthy:
        return "unhealthy"
    if check_tier and cand.tier < req.needed_tier:
        return f"tier {tier_name(cand.tier)} below needed {tier_name(req.needed_tier)}"
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


def _ttft(cand: Candidate, unknown_ttft_ms: float) -> float:
    return cand.load.ewma_ttft_ms if cand.load.ewma_ttft_ms > 0 else unknown_ttft_ms


def load_score(load: types_pb2.NodeLoad) -> float:
    """Queue pressure: running and (heavier) waiting requests per admitted slot, plus KV use."""
    slots = max(load.max_inflight, 1) if load.max_inflight else 32
    return (load.running + 2.0 * load.waiting) / slots + load.kv_cache_usage


def is_full(load: types_pb2.NodeLoad) -> bool:
    """A node that would queue or evict: prefix reuse is not worth waiting for."""
    at_limit = load.max_inflight > 0 and load.running + load.waiting >= load.max_inflight
    return at_limit or load.kv_cache_usage >= 0.95


def _screen(
    req: RouteRequest,
    candidates: Sequence[Candidate],
    unknown_ttft_ms: float,
    check_tier: bool = True,
) -> tuple[list[Candidate], list[ScoredCandidate]]:
    """Eligible candidates and the rejected ones (with reasons), the latency SLO included."""
    eligible, rejected = [], []
    for cand in candidates:
        why = rejection(req, cand, check_tier=check_tier)
        if why:
            cost = estimate_cost(cand.card, req.prompt_token_estimate, req.max_tokens)
            rejected.append(ScoredCandidate(cand, float("inf"), cost, why))
        else:
            eligible.append(cand)
    slo = req.latency_slo_ms
    if slo > 0:
        fast = [c for c in eligible if _ttft(c, unknown_ttft_ms) <= slo]
        if fast:  # the SLO is a preference: with nobody fast enough, the slow still serve
            for cand in eligible:
                if cand not in fast:
                    cost = estimate_cost(cand.card, req.prompt_token_estimate, req.max_tokens)
                    why = f"ttft {_ttft(cand, unknown_ttft_ms):.0f} ms over SLO {slo:.0f} ms"
                    rejected.append(ScoredCandidate(cand, float("inf"), cost, why))
            eligible = fast
    return eligible, rejected


def _no_route(req: RouteRequest, rejected: Sequence[ScoredCandidate]) -> NoRoute:
    if not rejected:
        return NoRoute("no nodes are registered", code=Code.UNAVAILABLE)
    all_unhealthy = all(r.rejected_reason == "unhealthy" for r in rejected)
    summary = "; ".join(
        f"{r.candidate.node_id}/{r.candidate.model}: {r.rejected_reason}" for r in rejected[:8]
    )
    return NoRoute(
        "no candidate can serve this request",
        code=Code.UNAVAILABLE if all_unhealthy else Code.FAILED_PRECONDITION,
        retryable=all_unhealthy,
        metadata={"needed_tier": tier_name(req.needed_tier), "rejected": summary[:1000]},
    )


def _tier_clause(req: RouteRequest) -> str:
    if req.estimate is None:
        return f"tier {tier_name(req.needed_tier)}"
    return f"tier {tier_name(req.needed_tier)}: {req.estimate.reason}"


def _decide(
    name: str,
    req: RouteRequest,
    ranked: Sequence[tuple[Candidate, float]],
    rejected: Sequence[ScoredCandidate],
    why_chosen: str,
) -> RouteDecision:
    if not ranked:
        raise _no_route(req, rejected)
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


# -- policies --------------------------------------------------------------------------------
class RoutingPolicy(Protocol):
    """What the pipeline asks of a routing policy; no stage looks at its class."""

    name: str
    kind: str

    @property
    def needs_estimate(self) -> bool:
        """Whether the tier estimate informs the decision (a pin ignores it: skip the work)."""

    @property
    def pinned_model(self) -> str:
        """The one model this policy sends to, "" when it chooses among models."""

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        """Order the candidates for this request (chosen first, then fallbacks)."""

    def served(self, req: RouteRequest, node_id: str, fell_back: bool) -> None:
        """Told which node answered (after a fallback, not the one `decide` chose first)."""


class _Policy(abc.ABC):
    """Shared defaults of the built-in policies: they use the estimate and learn nothing."""

    kind = "base"
    needs_estimate = True
    pinned_model = ""

    def __init__(self, name: str, unknown_ttft_ms: float = _UNKNOWN_TTFT_MS) -> None:
        self.name = name
        self.unknown_ttft_ms = unknown_ttft_ms

    @abc.abstractmethod
    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        """Order the candidates for this request (chosen first, then fallbacks)."""

    def served(self, req: RouteRequest, node_id: str, fell_back: bool) -> None:
        return None


class CheapestCapablePolicy(_Policy):
    """Cheapest eligible candidate of the needed tier or above; ties go to the faster node."""

    kind = "cheapest"

    def rank(
        self, req: RouteRequest, candidates: Sequence[Candidate]
    ) -> tuple[list[tuple[Candidate, float]], list[ScoredCandidate]]:
        eligible, rejected = _screen(req, candidates, self.unknown_ttft_ms)
        prompt = req.prompt_token_estimate
        costed = [(c, estimate_cost(c.card, prompt, req.max_tokens)) for c in eligible]
        costed.sort(
            key=lambda cc: (
                cc[1],
                cc[0].tier,
                _ttft(cc[0], self.unknown_ttft_ms),
                load_score(cc[0].load),
                cc[0].node_id,
            )
        )
        return costed, rejected

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        ranked, rejected = self.rank(req, candidates)
        why = ""
        if ranked:
            card = ranked[0][0].card
            why = f"cheapest healthy: {card.model_id} @ {_price_label(card)}"
        return _decide(self.name, req, ranked, rejected, why)


class PinnedPolicy(_Policy):
    """Only the named model (id or alias); among its nodes the least loaded first."""

    kind = "pinned"
    needs_estimate = False  # the caller chose the model: no tier to estimate

    def __init__(self, name: str, model: str, unknown_ttft_ms: float = _UNKNOWN_TTFT_MS) -> None:
        super().__init__(name, unknown_ttft_ms)
        self.model = model

    @property
    def pinned_model(self) -> str:  # type: ignore[override]
        return self.model

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        serving = [c for c in candidates if c.serves(self.model)]
        if not serving:
            raise ModelNotFound(
                f"no node serves model {self.model!r}", metadata={"model": self.model}
            )
        # A pin overrides the tier estimate: the caller asked for this model explicitly.
        eligible, rejected = _screen(req, serving, self.unknown_ttft_ms, check_tier=False)
        ranked = sorted(((c, load_score(c.load)) for c in eligible), key=lambda cs: cs[1])
        why = f"pinned to {self.model}"
        if ranked:
            why += f" on {ranked[0][0].node_id}"
        return _decide(self.name, req, ranked, rejected, why)


class LatencyPolicy(_Policy):
    """Lowest EWMA time-to-first-token among capable candidates."""

    kind = "latency"

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        eligible, rejected = _screen(req, candidates, self.unknown_ttft_ms)
        ranked = sorted(
            ((c, _ttft(c, self.unknown_ttft_ms)) for c in eligible),
            key=lambda cs: (cs[1], load_score(cs[0].load), cs[0].node_id),
        )
        why = f"lowest ttft: {ranked[0][0].node_id} @ {ranked[0][1]:.0f} ms" if ranked else ""
        return _decide(self.name, req, ranked, rejected, why)


class LeastLoadPolicy(_Policy):
    """Fewest running/waiting requests and least KV-cache use, from heartbeats."""

    kind = "least_load"

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        eligible, rejected = _screen(req, candidates, self.unknown_ttft_ms)
        ranked = sorted(
            ((c, load_score(c.load)) for c in eligible),
            key=lambda cs: (cs[1], estimate_cost(cs[0].card, 1, 1), cs[0].node_id),
        )
        why = ""
        if ranked:
            load = ranked[0][0].load
            why = (
                f"least loaded: {ranked[0][0].node_id} "
                f"({load.running} running, {load.waiting} waiting, kv {load.kv_cache_usage:.0%})"
            )
        return _decide(self.name, req, ranked, rejected, why)


def prefix_blocks(messages: Sequence[types_pb2.ChatMessage], block_chars: int) -> list[str]:
    """Chained hashes of fixed-size blocks of the serialised conversation.

    Block i's hash covers everything up to its end, so two conversations share block hashes
    exactly as far as they share a prefix: turn 2 of a chat matches turn 1's blocks.
    """
    text = "".join(f"\x1e{m.role}\x1f{m.content}" for m in messages)
    out, running = [], hashlib.blake2b(digest_size=12)
    for start in range(0, len(text) - block_chars + 1, block_chars):
        running.update(text[start : start + block_chars].encode())
        out.append(running.copy().hexdigest())
    if not out:  # shorter than one block: the whole text is the only prefix
        running.update(text.encode())
        out.append(running.hexdigest())
    return out


def _rendezvous(key: str, node_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}|{node_id}".encode(), digest_size=8).digest())


class PrefixAffinityPolicy(_Policy):
    """Same conversation prefix -> same self-hosted node of the chosen model (KV-cache reuse).

    The model comes from cheapest-capable. Among the self-hosted nodes serving it, the node that
    last served the longest matching prefix wins; a prefix never seen goes to the rendezvous-hash
    owner of its first block, so the mapping survives router restarts and moves little when nodes
    come and go. An unhealthy or full owner falls back to the least-loaded node of that model.
    """

    kind = "prefix_affinity"

    def __init__(
        self,
        name: str,
        block_chars: int = 256,
        max_entries: int = 100_000,
        unknown_ttft_ms: float = _UNKNOWN_TTFT_MS,
    ) -> None:
        super().__init__(name, unknown_ttft_ms)
        self.block_chars = block_chars
        self.max_entries = max_entries
        self._owner: OrderedDict[str, str] = OrderedDict()
        self._base = CheapestCapablePolicy(name, unknown_ttft_ms)

    def served(self, req: RouteRequest, node_id: str, fell_back: bool) -> None:
        if fell_back:  # `decide` remembered its first choice; the fallback owns the KV now
            self.remember(req.messages, node_id)

    def remember(self, messages: Sequence[types_pb2.ChatMessage], node_id: str) -> None:
        """Record who served a conversation (call it when a fallback served instead)."""
        for block in prefix_blocks(messages, self.block_chars):
            self._owner[block] = node_id
            self._owner.move_to_end(block)
        while len(self._owner) > self.max_entries:
            self._owner.popitem(last=False)

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        ranked, rejected = self._base.rank(req, candidates)
        if not ranked:
            raise _no_route(req, rejected)
        model = ranked[0][0].model
        same = [c for c, _ in ranked if c.model == model and not c.external]
        if not same:  # an external model has no KV cache of ours to reuse
            decision = self._base.decide(req, candidates)
            return replace(decision, reason=decision.reason + "; external, no affinity")
        blocks = prefix_blocks(req.messages, self.block_chars)
        by_node = {c.node_id: c for c in same}
        owner, how = None, ""
        for block in reversed(blocks):
            known = self._owner.get(block)
            if known in by_node:
                owner, how = by_node[known], "prefix seen before"
                break
        if owner is None:
            owner = max(same, key=lambda c: _rendezvous(blocks[0], c.node_id))
            how = "prefix hash owner"
        by_load = sorted(same, key=lambda c: (load_score(c.load), c.node_id))
        if is_full(owner.load):
            first, why = by_load[0], f"affinity node {owner.node_id} full; least loaded"
        else:
            first, why = owner, f"prefix affinity ({how})"
        order = [first] + [c for c in by_load if c is not first]
        order += [c for c, _ in ranked if c not in order]
        self.remember(req.messages, first.node_id)
        return _decide(
            self.name,
            req,
            [(c, float(i)) for i, c in enumerate(order)],
            rejected,
            f"{why}: {first.model} on {first.node_id}",
        )


# -- policy set ------------------------------------------------------------------------------
PolicyFactory = Callable[[str, PolicyConfig, float], RoutingPolicy]


def build_policy(
    name: str, config: PolicyConfig, unknown_ttft_ms: float = _UNKNOWN_TTFT_MS
) -> RoutingPolicy:
    """One policy object from its config entry."""
    if config.kind == "pinned":
        assert config.model is not None  # checked by PolicyConfig
        return PinnedPolicy(name, config.model, unknown_ttft_ms)
    if config.kind == "latency":
        return LatencyPolicy(name, unknown_ttft_ms)
    if config.kind == "least_load":
        return LeastLoadPolicy(name, unknown_ttft_ms)
    if config.kind == "prefix_affinity":
        return PrefixAffinityPolicy(name, config.prefix_chars, unknown_ttft_ms=unknown_ttft_ms)
    return CheapestCapablePolicy(name, unknown_ttft_ms)


class PolicySet:
    """Named policies; picks per request (a pin in RoutingHints.model) or per tenant."""

    def __init__(self, settings: RoutingSettings | None = None) -> None:
        self.settings = settings or RoutingSettings()
        ttft = self.settings.unknown_ttft_ms
        self._policies = {
            name: build_policy(name, cfg, ttft) for name, cfg in self.settings.policies.items()
        }
        self._min_tier = {
            name: cfg.min_tier.proto for name, cfg in self.settings.policies.items() if cfg.min_tier
        }

    def get(self, name: str) -> RoutingPolicy:
        return self._policies[name]

    def for_request(self, tenant: str, hints: types_pb2.RoutingHints) -> RoutingPolicy:
        """A pin (not "auto") wins; then the tenant's policy; then the default."""
        pin = hints.model.strip()
        if pin and pin.lower() != "auto":
            if pin in self._policies:  # a policy name may be passed as the "model" too
                return self._policies[pin]
            return PinnedPolicy("pinned", pin, self.settings.unknown_ttft_ms)
        name = self.settings.tenant_policies.get(tenant, self.settings.default_policy)
        return self._policies[name]

    def min_tier(self, policy: RoutingPolicy) -> int:
        """The policy's configured floor (0 when none)."""
        return self._min_tier.get(policy.name, 0)

"""Routing policies: which candidate serves a request, in what fallback order, and why.

A policy only orders the eligible candidates (mesh.router.decision screens them); the forward
stage walks that order on failure. The pipeline sees a policy only through the RoutingPolicy
protocol: whether it uses the tier estimate, the model it is pinned to, and a hook told who
served.
"""

from __future__ import annotations

import abc
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from mesh.config import PolicyConfig, RoutingSettings, field_default
from mesh.contract.errors import ModelNotFound, echo
from mesh.router.catalog import Candidate
from mesh.router.costs import estimate_cost, price_label
from mesh.router.decision import (
    RouteDecision,
    RouteRequest,
    ScoredCandidate,
    decided,
    is_full,
    load_score,
    no_route,
    screen,
    ttft,
)
from mesh.v1 import types_pb2

_UNKNOWN_TTFT_MS: float = field_default(RoutingSettings, "unknown_ttft_ms")


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
        eligible, rejected = screen(req, candidates, self.unknown_ttft_ms)
        prompt = req.prompt_token_estimate
        costed = [(c, estimate_cost(c.card, prompt, req.max_tokens)) for c in eligible]
        costed.sort(
            key=lambda cc: (
                cc[1],
                cc[0].tier,
                ttft(cc[0], self.unknown_ttft_ms),
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
            why = f"cheapest healthy: {card.model_id} @ {price_label(card)}"
        return decided(self.name, req, ranked, rejected, why)


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
                f"no node serves model {echo(self.model)!r}", metadata={"model": echo(self.model)}
            )
        # A pin overrides the tier estimate: the caller asked for this model explicitly.
        eligible, rejected = screen(req, serving, self.unknown_ttft_ms, check_tier=False)
        ranked = sorted(((c, load_score(c.load)) for c in eligible), key=lambda cs: cs[1])
        why = f"pinned to {self.model}"
        if ranked:
            why += f" on {ranked[0][0].node_id}"
        return decided(self.name, req, ranked, rejected, why)


class LatencyPolicy(_Policy):
    """Lowest EWMA time-to-first-token among capable candidates."""

    kind = "latency"

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        eligible, rejected = screen(req, candidates, self.unknown_ttft_ms)
        ranked = sorted(
            ((c, ttft(c, self.unknown_ttft_ms)) for c in eligible),
            key=lambda cs: (cs[1], load_score(cs[0].load), cs[0].node_id),
        )
        why = f"lowest ttft: {ranked[0][0].node_id} @ {ranked[0][1]:.0f} ms" if ranked else ""
        return decided(self.name, req, ranked, rejected, why)


class LeastLoadPolicy(_Policy):
    """Fewest running/waiting requests and least KV-cache use, from heartbeats."""

    kind = "least_load"

    def decide(self, req: RouteRequest, candidates: Sequence[Candidate]) -> RouteDecision:
        eligible, rejected = screen(req, candidates, self.unknown_ttft_ms)
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
        return decided(self.name, req, ranked, rejected, why)


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
            raise no_route(req, rejected)
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
        return decided(
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

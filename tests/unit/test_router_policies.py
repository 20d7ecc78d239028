"""Every routing policy on fixed candidate sets, plus the cost helpers."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from mesh.config import BaselineSettings, PolicyConfig, RoutingSettings
from mesh.contract.errors import Code, MeshError
from mesh.router.catalog import Candidate
from mesh.router.costs import actual_cost, baseline_cost, estimate_cost, estimate_prompt_tokens
from mesh.router.decision import NoRoute, RouteRequest, routes_alike, screen
from mesh.router.policies import (
    CheapestCapablePolicy,
    LatencyPolicy,
    LeastLoadPolicy,
    PinnedPolicy,
    PolicySet,
    PrefixAffinityPolicy,
    prefix_blocks,
)
from mesh.router.tier_estimator import ESTIMATED_TIERS, TierEstimate
from mesh.v1 import types_pb2 as t

SMALL, FRONTIER, MEDIUM = t.MODEL_TIER_SMALL, t.MODEL_TIER_FRONTIER, t.MODEL_TIER_MEDIUM


def card(
    model: str,
    tier: int,
    price: float,
    *,
    external: bool = False,
    ctx: int = 8192,
    caps: tuple[str, ...] = ("chat",),
    aliases: tuple[str, ...] = (),
) -> t.ModelCard:
    return t.ModelCard(
        model_id=model,
        provider="openai" if external else "self-hosted",
        kind=t.MODEL_KIND_EXTERNAL if external else t.MODEL_KIND_SELF_HOSTED,
        tier=tier,  # type: ignore[arg-type]
        context_window=ctx,
        input_price_per_mtok=price,
        output_price_per_mtok=price * 2,
        capabilities=list(caps),
        aliases=list(aliases),
    )


def cand(
    node: str,
    c: t.ModelCard,
    *,
    healthy: bool = True,
    running: int = 0,
    waiting: int = 0,
    kv: float = 0.0,
    ttft: float = 0.0,
    max_inflight: int = 8,
) -> Candidate:
    load = t.NodeLoad(
        running=running,
        waiting=waiting,
        kv_cache_usage=kv,
        ewma_ttft_ms=ttft,
        max_inflight=max_inflight,
    )
    return Candidate(node, f"{node}:1", c, load, healthy, False)


SMOL = card("smollm2", SMALL, 0.02, aliases=("smol",))
MID = card("mid", MEDIUM, 0.5, caps=("chat", "code"))
BIG = card("frontier", FRONTIER, 2.5, external=True, ctx=128000, caps=("chat", "code"))
MSG = [t.ChatMessage(role=t.ROLE_USER, content="What is the capital of France?")]


def est(tier: int, reason: str = "short factual question") -> TierEstimate:
    return TierEstimate(tier, 0.9, reason, (1.0, 0.0, 0.0, 0.0))


def req(tier: int = SMALL, reason: str = "short factual question", **hints: object) -> RouteRequest:
    return RouteRequest(MSG, 100, t.RoutingHints(**hints), est(tier, reason))  # type: ignore[arg-type]


def test_cost_helpers() -> None:
    assert estimate_prompt_tokens(MSG) == 8 + 4
    assert estimate_cost(SMOL, 1_000_000, 0) == pytest.approx(0.02)
    assert estimate_cost(BIG, 1000, 1000) == pytest.approx((1000 * 2.5 + 1000 * 5.0) / 1e6)
    usage = t.Usage(input_tokens=1000, output_tokens=10, cached_input_tokens=400)
    c = t.ModelCard(
        input_price_per_mtok=1, output_price_per_mtok=2, cached_input_price_per_mtok=0.1
    )
    assert actual_cost(c, usage) == pytest.approx((600 + 40 + 20) / 1e6)
    assert baseline_cost(BaselineSettings(), 1000, 1000) == pytest.approx(0.0125)


def test_cheapest_capable_picks_cheapest_of_needed_tier_and_explains() -> None:
    pool = [cand("big", BIG), cand("small-1", SMOL), cand("mid", MID)]
    d = CheapestCapablePolicy("cheapest").decide(req(SMALL), pool)
    assert d.chosen.node_id == "small-1"
    assert [c.node_id for c in d.fallbacks] == ["mid", "big"]
    assert d.reason == "tier small: short factual question; cheapest healthy: smollm2 @ $0.02/M"
    d = CheapestCapablePolicy("cheapest").decide(req(FRONTIER, reason="code to write"), pool)
    assert d.chosen.node_id == "big" and d.fallbacks == ()
    rejected = {rc.node_id: rc.rejected_reason for rc in d.route_candidates()}
    assert rejected["small-1"] == "tier small below needed frontier"
    assert rejected["big"] == ""
    chosen = [rc for rc in d.route_candidates() if rc.chosen]
    assert len(chosen) == 1 and chosen[0].estimated_cost_usd == pytest.approx(d.estimated_cost_usd)


def test_cheapest_filters_health_context_capabilities_external_and_cost() -> None:
    policy = CheapestCapablePolicy("cheapest")
    pool = [cand("s", SMOL, healthy=False), cand("m", MID), cand("b", BIG)]
    assert policy.decide(req(), pool).chosen.node_id == "m"
    assert (
        policy.decide(
            req(require_capabilities=["code"]), [cand("s", SMOL), *pool[1:]]
        ).chosen.node_id
        == "m"
    )
    assert policy.decide(req(allow_external=False), pool).fallbacks == ()
    tiny = cand("tiny", card("tiny", SMALL, 0.01, ctx=64))
    d = policy.decide(req(), [tiny, cand("m", MID)])
    assert d.chosen.node_id == "m"
    assert "context window 64" in d.route_candidates()[1].rejected_reason
    with pytest.raises(NoRoute) as err:
        policy.decide(req(max_cost_usd=1e-9), [cand("m", MID)])
    assert (
        err.value.code is Code.FAILED_PRECONDITION and "max_cost" in err.value.metadata["rejected"]
    )
    with pytest.raises(NoRoute) as err:
        policy.decide(req(), [cand("s", SMOL, healthy=False)])
    assert err.value.code is Code.UNAVAILABLE and err.value.retryable


def test_min_tier_hint_and_latency_slo() -> None:
    pool = [cand("s", SMOL, ttft=900), cand("m", MID, ttft=100), cand("b", BIG, ttft=300)]
    assert CheapestCapablePolicy("c").decide(req(min_tier=MEDIUM), pool).chosen.node_id == "m"
    slo = duration_pb2.Duration(nanos=500_000_000)
    d = CheapestCapablePolicy("c").decide(req(latency_slo=slo), pool)
    assert d.chosen.node_id == "m"  # smollm2 is cheaper but over the 500 ms SLO
    assert (
        "over SLO" in next(rc for rc in d.route_candidates() if rc.node_id == "s").rejected_reason
    )
    # Nobody meets the SLO: it is a preference, the cheapest still serves.
    fast_slo = duration_pb2.Duration(nanos=1_000_000)
    assert CheapestCapablePolicy("c").decide(req(latency_slo=fast_slo), pool).chosen.node_id == "s"


def test_pinned_by_id_or_alias_ignores_tier_and_orders_by_load() -> None:
    pool = [cand("s1", SMOL, running=5), cand("s2", SMOL, running=1), cand("b", BIG)]
    d = PinnedPolicy("pinned", "smol").decide(req(FRONTIER), pool)
    assert [c.node_id for c in d.ordered] == ["s2", "s1"]
    assert "pinned to smol" in d.reason
    with pytest.raises(MeshError) as err:
        PinnedPolicy("pinned", "gpt-9").decide(req(), pool)
    assert err.value.code is Code.NOT_FOUND


def test_a_reason_without_an_estimate_claims_no_tier() -> None:
    """A pinned request is never estimated: its reason must not say "tier small" (issue 13: a
    reason never names a category the prompt is not); a min_tier floor is named as such."""
    pool = [cand("s1", SMOL), cand("b", BIG)]
    bare = RouteRequest(MSG, 100, t.RoutingHints(), None)  # type: ignore[arg-type]
    d = PinnedPolicy("pinned", "smol").decide(bare, pool)
    assert d.reason == "tier not estimated; pinned to smol on s1"
    floored = RouteRequest(MSG, 100, t.RoutingHints(min_tier=MEDIUM), None)  # type: ignore[arg-type]
    d = PinnedPolicy("pinned", "smol").decide(floored, pool)
    assert d.reason.startswith("tier medium (min_tier); pinned to smol")


ALL_TIERS = (t.MODEL_TIER_UNSPECIFIED, SMALL, MEDIUM, t.MODEL_TIER_LARGE, FRONTIER)


def _screens(pool: list[Candidate], min_tier: int) -> set[tuple[tuple[str, ...], ...]]:
    """The distinct (eligible, rejected) node sets the screen gives over every tier an estimate
    can name."""
    outcomes = set()
    for estimated in ESTIMATED_TIERS:
        estimate = TierEstimate(estimated, 1.0, "test", (0.0, 0.0, 0.0, 0.0))
        r = RouteRequest(MSG, 100, t.RoutingHints(min_tier=min_tier), estimate)  # type: ignore[arg-type]
        eligible, rejected = screen(r, pool, 500.0)
        outcomes.add(
            (tuple(c.node_id for c in eligible), tuple(sc.candidate.node_id for sc in rejected))
        )
    return outcomes


@pytest.mark.parametrize("min_tier", ALL_TIERS)
def test_routes_alike_holds_exactly_where_no_estimate_can_change_the_eligible_set(
    min_tier: int,
) -> None:
    """Checked against the screen every policy uses, for every catalogue of up to three tiers:
    with every node healthy, `routes_alike` is True iff every tier an estimate can name leaves
    the same candidates eligible; with one node down it is never True where they differ (it
    reads tiers only, as health may change before the decision)."""
    import itertools

    cards = {tier: card(f"m{tier}", tier, 0.1 * (tier + 1)) for tier in ALL_TIERS}
    for size in range(1, 4):
        for tiers in itertools.combinations(ALL_TIERS, size):
            alike = routes_alike(frozenset(tiers), min_tier)
            healthy = [cand(f"n{tier}", cards[tier]) for tier in tiers]
            assert alike == (len(_screens(healthy, min_tier)) == 1), tiers
            for down in tiers:
                pool = [cand(f"n{x}", cards[x], healthy=x != down) for x in tiers]
                assert not alike or len(_screens(pool, min_tier)) == 1, (tiers, down)
    assert not routes_alike(frozenset(), min_tier)  # nothing known yet: estimate as ever


def test_a_request_left_unestimated_says_why_in_its_reason() -> None:
    r = RouteRequest(MSG, 100, unestimated_because="one tier")  # type: ignore[arg-type]
    d = CheapestCapablePolicy("cheapest").decide(r, [cand("b", BIG)])
    assert d.reason.startswith("tier not estimated: one tier; cheapest healthy: frontier")


def test_latency_policy_prefers_lowest_ewma_ttft_unknown_as_default() -> None:
    pool = [cand("a", SMOL, ttft=250), cand("b", SMOL, ttft=80), cand("c", SMOL)]
    d = LatencyPolicy("latency", unknown_ttft_ms=1000).decide(req(), pool)
    assert [c.node_id for c in d.ordered] == ["b", "a", "c"]
    assert "lowest ttft: b @ 80 ms" in d.reason


def test_least_load_uses_running_waiting_and_kv() -> None:
    pool = [
        cand("busy", SMOL, running=6, waiting=2),
        cand("kv", SMOL, running=1, kv=0.9),
        cand("idle", SMOL, running=1, kv=0.1),
    ]
    d = LeastLoadPolicy("least_load").decide(req(), pool)
    assert [c.node_id for c in d.ordered] == ["idle", "kv", "busy"]
    assert d.scored[0].score < d.scored[1].score < d.scored[2].score


def _convo(*turns: str) -> list[t.ChatMessage]:
    roles = [t.ROLE_SYSTEM] + [t.ROLE_USER, t.ROLE_ASSISTANT] * 10
    return [t.ChatMessage(role=r, content=c) for r, c in zip(roles, turns, strict=False)]


def test_prefix_blocks_chain_so_later_turns_share_earlier_blocks() -> None:
    first = _convo("You are a helpful assistant. " * 20, "Tell me about cats.")
    later = [*first, *_convo("x", "y", "Cats are mammals. " * 5, "And dogs? " * 8)[2:]]
    a, b = prefix_blocks(first, 64), prefix_blocks(later, 64)
    assert len(b) > len(a) and b[: len(a) - 1] == a[:-1]


def test_prefix_affinity_sticks_to_one_node_and_falls_back_when_full() -> None:
    policy = PrefixAffinityPolicy("affinity", block_chars=64)
    pool = [cand(f"s{i}", SMOL) for i in range(4)] + [cand("b", BIG)]
    convo = _convo("You are a support bot for ACME. " * 10, "My order is late.")
    first = policy.decide(RouteRequest(convo, 50, estimate=est(SMALL)), pool).chosen.node_id
    follow = [*convo, *_convo("x", "Sorry! What is the order id?", "It is 1234.")[2:]]
    again = policy.decide(RouteRequest(follow, 50, estimate=est(SMALL)), pool)
    assert again.chosen.node_id == first and "prefix seen before" in again.reason
    assert {c.node_id for c in again.fallbacks} >= {"b"}
    # The owner is full: least-loaded node of the same model instead.
    full_pool = [
        cand(c.node_id, SMOL, running=8 if c.node_id == first else 3 - i)
        for i, c in enumerate(pool[:4])
    ] + [cand("b", BIG)]
    d = policy.decide(RouteRequest(follow, 50, estimate=est(SMALL)), full_pool)
    assert d.chosen.node_id != first and "full; least loaded" in d.reason
    # The owner is unhealthy: it is not eligible at all.
    sick = [cand(c.node_id, SMOL, healthy=c.node_id != first) for c in pool[:4]]
    assert (
        policy.decide(RouteRequest(follow, 50, estimate=est(SMALL)), sick).chosen.node_id != first
    )


def test_prefix_affinity_spreads_distinct_prefixes() -> None:
    policy = PrefixAffinityPolicy("affinity", block_chars=32)
    pool = [cand(f"s{i}", SMOL) for i in range(4)]
    chosen = {
        policy.decide(
            RouteRequest(_convo(f"System prompt number {i} " * 3, "hi"), 10, estimate=est(SMALL)),
            pool,
        ).chosen.node_id
        for i in range(40)
    }
    assert len(chosen) >= 3


def test_policy_set_resolution() -> None:
    settings = RoutingSettings(
        policies={
            "cheap": PolicyConfig(kind="cheapest"),
            "fast": PolicyConfig(kind="latency"),
            "smol": PolicyConfig(kind="pinned", model="smollm2", min_tier="medium"),
        },
        default_policy="cheap",
        tenant_policies={"acme": "fast"},
    )
    ps = PolicySet(settings)
    assert ps.for_request("x", t.RoutingHints()).name == "cheap"
    assert ps.for_request("acme", t.RoutingHints(model="auto")).name == "fast"
    pinned = ps.for_request("acme", t.RoutingHints(model="frontier"))
    assert isinstance(pinned, PinnedPolicy) and pinned.model == "frontier"
    assert ps.for_request("x", t.RoutingHints(model="smol")).name == "smol"
    assert ps.min_tier(ps.get("smol")) == MEDIUM
    with pytest.raises(ValueError, match="unknown policy"):
        RoutingSettings(default_policy="nope")

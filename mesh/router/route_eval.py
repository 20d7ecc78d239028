"""Measure a routing policy on a labelled file (`mesh route-eval`).

Each row is {"text", "tier", ...}: the smallest tier that can do the task. The policy routes the
text as a one-message chat against a catalogue of model cards (one healthy synthetic node per
card); we compare the tier it picked with the label. Cost is relative to sending every row to
the cheapest frontier-tier card ("always frontier"), both priced at prompt + max_tokens.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.config import RoutingSettings, Tier, field_default, tier_name
from mesh.router.catalog import Candidate
from mesh.router.costs import estimate_cost, estimate_prompt_tokens
from mesh.router.decision import RouteRequest
from mesh.router.policies import CheapestCapablePolicy, RoutingPolicy
from mesh.router.tier_estimator import TierEstimator
from mesh.v1 import types_pb2


@dataclass(frozen=True)
class LabelledPrompt:
    id: str
    text: str
    tier: int
    kind: str


def load_labelled(path: str | Path) -> list[LabelledPrompt]:
    """Rows of the eval format; a bad row fails with its line number."""
    out = []
    p = Path(path)
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        tier = Tier.named(row.get("tier"))
        if tier is None or not isinstance(row.get("text"), str):
            raise ValueError(f"{p}:{lineno}: needs text and tier in {[t.value for t in Tier]}")
        out.append(
            LabelledPrompt(
                str(row.get("id", lineno)), row["text"], tier.proto, str(row.get("kind", ""))
            )
        )
    return out


def demo_cards() -> list[types_pb2.ModelCard]:
    """A small self-hosted model and a frontier API, when no config catalogue is given."""
    return [
        types_pb2.ModelCard(
            model_id="smollm2-135m-instruct",
            provider="self-hosted",
            kind=types_pb2.MODEL_KIND_SELF_HOSTED,
            tier=Tier.SMALL.proto,
            context_window=8192,
            input_price_per_mtok=0.02,
            output_price_per_mtok=0.04,
            capabilities=["chat"],
            aliases=["smollm2"],
        ),
        types_pb2.ModelCard(
            model_id="frontier-api",
            provider="openai",
            kind=types_pb2.MODEL_KIND_EXTERNAL,
            tier=Tier.FRONTIER.proto,
            context_window=128000,
            input_price_per_mtok=2.5,
            output_price_per_mtok=10.0,
            capabilities=["chat", "code", "json-mode"],
        ),
    ]


def candidates_for(cards: Sequence[types_pb2.ModelCard]) -> list[Candidate]:
    return [
        Candidate(f"eval-{i}-{c.model_id}", "eval:0", c, types_pb2.NodeLoad(), True, True)
        for i, c in enumerate(cards)
    ]


def evaluate(
    rows: Sequence[LabelledPrompt],
    cards: Sequence[types_pb2.ModelCard],
    estimator: TierEstimator,
    policy: RoutingPolicy | None = None,
    max_tokens: int = field_default(RoutingSettings, "default_max_tokens"),
) -> dict[str, Any]:
    """cost_ratio, under_routing_rate, over_routing_rate, tier_share (+ n, by_kind)."""
    if not rows:
        raise ValueError("no labelled rows")
    policy = policy or CheapestCapablePolicy("cheapest")
    candidates = candidates_for(cards)
    top = max(c.tier for c in cards)
    frontier = min(
        (c for c in cards if c.tier == top),
        key=lambda c: estimate_cost(c, 1000, 1000),
    )
    routed_cost = frontier_cost = 0.0
    under = over = 0
    shares: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    for row in rows:
        messages = [types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=row.text)]
        estimate = estimator.estimate(messages)
        decision = policy.decide(
            RouteRequest(messages=messages, max_tokens=max_tokens, estimate=estimate), candidates
        )
        got = decision.chosen.tier
        prompt = estimate_prompt_tokens(messages)
        routed_cost += estimate_cost(decision.chosen.card, prompt, max_tokens)
        frontier_cost += estimate_cost(frontier, prompt, max_tokens)
        shares[tier_name(got)] += 1
        under += got < row.tier
        over += got > row.tier
        kind = by_kind.setdefault(row.kind or tier_name(row.tier), Counter())
        kind["n"] += 1
        kind["under"] += got < row.tier
        kind["over"] += got > row.tier
    n = len(rows)
    labelled_low = sum(1 for r in rows if r.tier < top)
    labelled_high = n - labelled_low
    return {
        "n": n,
        "cost_ratio": round(routed_cost / frontier_cost, 4) if frontier_cost else 0.0,
        "under_routing_rate": round(under / n, 4),
        "over_routing_rate": round(over / n, 4),
        "tier_share": {name: round(count / n, 4) for name, count in sorted(shares.items())},
        "under_routing_of_hard": round(under / labelled_high, 4) if labelled_high else 0.0,
        "over_routing_of_easy": round(over / labelled_low, 4) if labelled_low else 0.0,
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "policy": policy.name,
        "embeddings": estimator.uses_embeddings,
    }

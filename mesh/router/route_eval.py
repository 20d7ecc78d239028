"""Measure a routing policy on a labelled file (`mesh route-eval`).

Each row is {"text", "tier", ...} (optionally "kind" and "trap"): the smallest tier that can do
the task. The policy routes the text as a one-message chat against a catalogue of model cards
(one healthy synthetic node per card); we compare the tier it picked with the label. Cost is
relative to sending every row to the cheapest card of the catalogue's top tier ("always
frontier"), both priced at prompt + max_tokens.
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
    trap: str = ""


def load_labelled(path: str | Path) -> list[LabelledPrompt]:
    """Rows of the eval format; a bad row fails with its line number."""
    out = []
    p = Path(path)
    for lineno, line in enumerate(p.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        tier = Tier.named(row.get("tier"))
        if tier is None or not isinstance(row.get("text"), str):
            raise ValueError(f"{p}:{lineno}: needs text and tier in {[t.value for t in Tier]}")
        out.append(
            LabelledPrompt(
                str(row.get("id", lineno)),
                row["text"],
                tier.proto,
                str(row.get("kind", "")),
                str(row.get("trap", "") or ""),
            )
        )
    return out


def demo_cards() -> list[types_pb2.ModelCard]:
    """The demo's three tiers (mesh/demo_catalogue.py), when no config catalogue is given."""
    from mesh.demo_catalogue import demo_cards as cards

    return cards()


def candidates_for(cards: Sequence[types_pb2.ModelCard]) -> list[Candidate]:
    return [
        Candidate(f"eval-{i}-{c.model_id}", "eval:0", c, types_pb2.NodeLoad(), True, True)
        for i, c in enumerate(cards)
    ]


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def evaluate(
    rows: Sequence[LabelledPrompt],
    cards: Sequence[types_pb2.ModelCard],
    estimator: TierEstimator,
    policy: RoutingPolicy | None = None,
    max_tokens: int = field_default(RoutingSettings, "default_max_tokens"),
) -> dict[str, Any]:
    """cost_ratio, under/over-routing rates, tier_share, by_tier, confusion, by_trap, by_kind.

    `by_tier[t]`: of the rows labelled t, how many (`n`), how many were sent to a lower tier
    (`under`) and to a higher one (`over`), and where they went (`sent`). `confusion[t][c]`
    counts rows labelled t sent to tier c. Cost is priced at prompt + max_tokens per row.
    """
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
    deciders: Counter[str] = Counter()
    confusion: dict[str, Counter[str]] = {}
    by_kind: dict[str, Counter[str]] = {}
    by_trap: dict[str, Counter[str]] = {}
    for row in rows:
        messages = [types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=row.text)]
        estimate = estimator.estimate(messages)
        deciders[estimate.decided_by] += 1
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
        confusion.setdefault(tier_name(row.tier), Counter())[tier_name(got)] += 1
        for table, key in ((by_kind, row.kind or tier_name(row.tier)), (by_trap, row.trap)):
            if not key:
                continue
            counts = table.setdefault(key, Counter())
            counts["n"] += 1
            counts["correct"] += got == row.tier
            counts["under"] += got < row.tier
            counts["over"] += got > row.tier
    n = len(rows)
    labelled_low = sum(1 for r in rows if r.tier < top)
    labelled_high = n - labelled_low
    order = [t.value for t in Tier]
    by_tier: dict[str, dict[str, Any]] = {}
    for label in sorted(confusion, key=order.index):
        sent = confusion[label]
        rank = order.index(label)
        by_tier[label] = {
            "n": sum(sent.values()),
            "under": sum(v for k, v in sent.items() if order.index(k) < rank),
            "over": sum(v for k, v in sent.items() if order.index(k) > rank),
            "sent": {k: sent[k] for k in sorted(sent, key=order.index)},
        }
        by_tier[label]["under_rate"] = _rate(by_tier[label]["under"], by_tier[label]["n"])
        by_tier[label]["over_rate"] = _rate(by_tier[label]["over"], by_tier[label]["n"])
    report: dict[str, Any] = {
        "n": n,
        "cost_ratio": round(routed_cost / frontier_cost, 4) if frontier_cost else 0.0,
        "under_routing_rate": _rate(under, n),
        "over_routing_rate": _rate(over, n),
        "tier_share": {name: _rate(count, n) for name, count in sorted(shares.items())},
        "under_routing_of_hard": _rate(under, labelled_high),
        "over_routing_of_easy": _rate(over, labelled_low),
        "by_tier": by_tier,
        "confusion": {
            label: {c: confusion[label][c] for c in sorted(confusion[label], key=order.index)}
            for label in sorted(confusion, key=order.index)
        },
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "policy": policy.name,
        "embeddings": estimator.uses_embeddings,
        "decided_by": {name: _rate(count, n) for name, count in sorted(deciders.items())},
        "catalogue": [f"{c.model_id}:{tier_name(c.tier)}" for c in cards],
    }
    if by_trap:
        report["by_trap"] = {
            k: {**dict(v), "accuracy": _rate(v["correct"], v["n"])}
            for k, v in sorted(by_trap.items())
        }
    return report

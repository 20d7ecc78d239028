"""Score the response cache on labelled prompt pairs: false hits (a wrong answer served) and
true hits (a paraphrase reused).

For each pair, `a`'s answer is stored and `b` is looked up in the real ResponseCache with the
configured settings (threshold, verification, normalisation), the pair alone in its namespace
(a tenant of its own), so no other row's entry can be hit instead. Format of the pairs:
../shared/eval/cache/README.md (`a`, `b`, `same_answer`, `kind`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.config import CacheSettings
from mesh.embeddings.batching import Embedder
from mesh.router.cache import CacheScope, Outcome, ResponseCache
from mesh.v1 import types_pb2

_TARGET = "tier:eval"


@dataclass(frozen=True)
class Pair:
    id: str
    a: str
    b: str
    same_answer: bool
    kind: str


@dataclass
class PairResult:
    pair: Pair
    hit: bool
    similarity: float | None = None
    verification: str = ""
    veto: str = ""


@dataclass
class CacheReport:
    settings: CacheSettings
    threshold: float  # the cosine in effect (ResponseCache.threshold)
    reverse: bool
    results: list[PairResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        false = [r for r in self.results if not r.pair.same_answer]
        true = [r for r in self.results if r.pair.same_answer]
        n: Counter[str] = Counter(r.pair.kind for r in self.results)
        hits: Counter[str] = Counter(r.pair.kind for r in self.results if r.hit)
        return {
            "n": len(self.results),
            "direction": "b stored, a asked" if self.reverse else "a stored, b asked",
            "threshold": self.threshold,
            "verify": self.settings.verify,
            "false_hits": sum(r.hit for r in false),
            "false_pairs": len(false),
            "false_hit_rate": _rate(sum(r.hit for r in false), len(false)),
            "true_hits": sum(r.hit for r in true),
            "true_pairs": len(true),
            "true_hit_rate": _rate(sum(r.hit for r in true), len(true)),
            "by_kind": {
                kind: {"n": n[kind], "hits": hits[kind], "same_answer": kind_same}
                for kind, kind_same in sorted(
                    {(r.pair.kind, r.pair.same_answer) for r in self.results}
                )
            },
            "false_hit_ids": [r.pair.id for r in false if r.hit],
        }


def _rate(hits: int, n: int) -> float:
    return hits / n if n else 0.0


def load_pairs(path: str | Path) -> list[Pair]:
    """Read a pairs file; a malformed line is a ValueError naming its line number."""
    pairs: list[Pair] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append(
                Pair(
                    str(row.get("id", f"line-{number}")),
                    str(row["a"]),
                    str(row["b"]),
                    bool(row["same_answer"]),
                    str(row.get("kind", "same" if row["same_answer"] else "different")),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}:{number}: not a cache pair ({err})") from None
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def evaluate(
    pairs: list[Pair],
    settings: CacheSettings,
    embedder: Embedder | None,
    *,
    reverse: bool = False,
) -> CacheReport:
    """Store one side of each pair, ask the other; every pair in a namespace of its own."""
    cache = ResponseCache(settings, embedder=embedder)
    report = CacheReport(settings, cache.threshold, reverse)
    sampling = types_pb2.SamplingParams(temperature=0.0)
    for index, pair in enumerate(pairs):
        stored, asked = (pair.b, pair.a) if reverse else (pair.a, pair.b)
        scope = CacheScope.build(f"eval-{index}", "eval", _TARGET, sampling)
        key = cache.key(scope, [types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=stored)])
        key.semantic_target = _TARGET
        cache.put(
            key,
            "the stored answer",
            types_pb2.Usage(input_tokens=10, output_tokens=10),
            outcome=Outcome.COMPLETE,
            model="eval",
            node_id="eval",
        )
        ask = cache.key(scope, [types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=asked)])
        ask.semantic_target = _TARGET
        hit = cache.get(ask)
        report.results.append(
            PairResult(
                pair,
                hit is not None,
                hit.similarity if hit else None,
                hit.verification if hit else "",
                ask.veto,
            )
        )
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as an operator reads it: both rates together, then every kind's count."""
    lines = [
        f"{report['n']} pairs ({report['direction']}), verification "
        f"{'on, candidates from cosine' if report['verify'] else 'off, hits from cosine'} "
        f">= {report['threshold']:g}"
        + (f" of {report['vectors']} vectors" if report.get("vectors") else ""),
        f"false-hit rate  {report['false_hit_rate']:.3f}  "
        f"({report['false_hits']}/{report['false_pairs']} pairs that need different answers "
        "were served the stored one)",
        f"true-hit rate   {report['true_hit_rate']:.3f}  "
        f"({report['true_hits']}/{report['true_pairs']} paraphrases served from the cache)",
    ]
    for kind, counts in report["by_kind"].items():
        label = "true hits " if counts["same_answer"] else "FALSE hits"
        lines.append(f"  {kind:<26} {label} {counts['hits']}/{counts['n']}")
    if report["false_hit_ids"]:
        lines.append("false hits: " + ", ".join(report["false_hit_ids"]))
    return "\n".join(lines)

"""Measured quality of a policy on labelled files (formats: ../shared/eval/README.md).

Injection-style files: recall per attack category, flag rate per benign source (false positives).
PII files: recall and precision per entity type, and labelled values that survive redaction.
`split` picks the rows by guards.dev_split: "heldout" (the rows no trainer or threshold has
seen, the only figures to report), "train", or "all".
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from guards.dev_split import rows_in
from guards.hooks import InputCheck
from guards.policy_store import DEFAULT_POLICY_PATH, PolicyStore
from guards.verdict import Action, Stage

ATTACK_LABELS = {"attack", "harmful"}


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


async def _evaluate_rows(
    store: PolicyStore, rows: list[dict[str, Any]], split: str
) -> dict[str, Any]:
    chain = store.chain(Stage.INPUT)
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    entity: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        result = await chain.run(InputCheck(row["text"]))
        flagged = any(o.verdict.action is not Action.ALLOW for o in result.outcomes)
        if "label" in row:
            if row["label"] in ATTACK_LABELS:
                by_category[row["category"]][0] += flagged
                by_category[row["category"]][1] += 1
            else:
                by_source[row["source"]][0] += flagged
                by_source[row["source"]][1] += 1
        if "spans" in row:
            _score_pii(row, result, entity)
    return {
        "policy_version": store.version,
        "split": split,
        "rows": len(rows),
        "by_category": {
            k: {"flagged": v[0], "total": v[1], "recall": _ratio(v[0], v[1])}
            for k, v in sorted(by_category.items())
        },
        "by_source": {
            k: {"flagged": v[0], "total": v[1], "false_positive_rate": _ratio(v[0], v[1])}
            for k, v in sorted(by_source.items())
        },
        "by_entity": {k: _entity_figures(v) for k, v in sorted(entity.items())},
    }


def _score_pii(row: dict[str, Any], result: Any, entity: dict[str, dict[str, int]]) -> None:
    text = row["text"]
    found = [
        f
        for o in result.outcomes
        for f in o.verdict.findings
        if o.verdict.action is not Action.ALLOW
    ]
    labels = row["spans"]
    for span in labels:
        counts = entity[span["type"]]
        counts["labelled"] += 1
        if any(
            f.type == span["type"] and f.start < span["end"] and span["start"] < f.end
            for f in found
        ):
            counts["detected"] += 1
        # A blocked request is never forwarded: its text keeps every value, and leaks none.
        if not result.blocked and text[span["start"] : span["end"]] in result.text:
            counts["survived"] += 1
    for f in found:
        if f.type in {"PROMPT_INJECTION", "TOKEN_LIMIT_EXCEEDED"}:
            continue
        counts = entity[f.type]
        counts["predicted"] += 1
        if any(s["type"] == f.type and f.start < s["end"] and s["start"] < f.end for s in labels):
            counts["correct"] += 1


def _entity_figures(c: dict[str, int]) -> dict[str, Any]:
    return {
        "labelled": c["labelled"],
        "predicted": c["predicted"],
        "recall": _ratio(c["detected"], c["labelled"]),
        "precision": _ratio(c["correct"], c["predicted"]),
        "survived_redaction": c["survived"],
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def evaluate(
    dataset: str | Path, policy: str | Path | None = None, split: str = "all"
) -> dict[str, Any]:
    """Figures for the `split` rows of `dataset` under `policy` (the default policy when None),
    keyed by_category, by_source, by_entity."""
    rows = rows_in(_read(Path(dataset)), split)
    store = PolicyStore.from_file(policy or DEFAULT_POLICY_PATH)
    return asyncio.run(_evaluate_rows(store, rows, split))

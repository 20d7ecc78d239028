"""Streaming overhead: time to first chunk and per-chunk gap of an 8-chunk answer, with the
default guards, against the unary hop measured in the same rounds.

Paths (benchmarks.fleet): D node, N relay, R lean (default guards, pinned model) and R default
(the shipped config, distinct prompts). Each router path is measured both unary and streaming in
the same interleaved rounds, so "added unary p50" and "added time to first chunk" share their
noise. The node runs FakeEngine (a deterministic test engine): 8 one-word chunks, no delay, so
the per-chunk gap is each hop's own cost of passing a chunk on.

Targets (issue 12): added time to first chunk <= added unary p50 + 1 ms (the summary states
it as first chunk / (unary + 1 ms) <= 1); added per-chunk gap <= 1.2 x N's.

Run: python -m benchmarks.streaming [--quick]
"""

from __future__ import annotations

import asyncio
import math
import sys
from dataclasses import replace

from benchmarks.clients import ANSWER_CHUNKS, open_paths
from benchmarks.fleet import fleet, start_mesh_paths
from benchmarks.harness import Probe, interleaved, timed, versions, warm_up
from benchmarks.prompts import distinct_prompts
from benchmarks.stats import (
    Figure,
    Plan,
    Row,
    fmt,
    paired_added,
    ratio,
    suite_arguments,
    text_table,
    write_rows,
)

ROUTERS = {"R lean": "lean", "R default": "default"}
UNARY = ("D node", "R lean", "R default")  # the baselines of "added unary p50"

Results = dict[str, dict[str, Figure]]


def run(plan: Plan) -> tuple[Results, dict[str, str]]:
    with fleet() as f:
        started = start_mesh_paths(f, ROUTERS)

        async def go() -> tuple[Results, dict[str, str]]:
            async with open_paths(
                started,
                prompts=lambda _: distinct_prompts(),
                pinned=lambda name: name != "R default",
            ) as paths:
                probes: dict[str, Probe] = {}
                for name, path in paths.items():
                    probes[f"{name} stream"] = path.stream
                    if name in UNARY:
                        probes[f"{name} unary"] = timed(path.call)
                await warm_up(probes, plan)
                results = await interleaved(probes, plan)
                hits = {
                    name: f"{p.cache_hits}/{p.sent}" + (f", {p.errors} errors" if p.errors else "")
                    for name, p in paths.items()
                }
                return results, hits

        return asyncio.run(go())


def rows(r: Results) -> list[Row]:
    d_unary, d_stream = r["D node unary"]["ms"], r["D node stream"]
    gap_n = paired_added(r["N relay stream"]["gap"], d_stream["gap"])
    out = []
    for name in ROUTERS:
        unary = paired_added(r[f"{name} unary"]["ms"], d_unary)
        ttfc = paired_added(r[f"{name} stream"]["ttfc"], d_stream["ttfc"])
        gap = paired_added(r[f"{name} stream"]["gap"], d_stream["gap"])
        messages = r[f"{name} stream"]["deltas"].p50
        gap_row = Row(
            f"{name}: added per-chunk gap vs N's",
            f"+{1e3 * gap:.0f} us / N +{1e3 * gap_n:.0f} us",
            ratio(gap, gap_n), 1.2, "<=",
        )  # fmt: skip
        if messages < ANSWER_CHUNKS:  # chunks held back and sent together: no gap to speak of
            gap_row = replace(
                gap_row,
                measured=f"{messages:.0f} message(s) for {ANSWER_CHUNKS} chunks (held back)",
                value=math.inf,
            )
        out += [
            Row(
                f"{name}: added time to first chunk vs added unary p50 + 1 ms",
                f"first of {ANSWER_CHUNKS} chunks +{ttfc:.2f} ms, unary +{unary:.2f} ms",
                ratio(ttfc, unary + 1.0), 1.0, "<=",
            ),
            gap_row,
        ]  # fmt: skip
    return out


def report(r: Results, hits: dict[str, str]) -> None:
    d = r["D node stream"]
    head = ["path", "first chunk ms", "+first chunk", "p99 first", "whole stream ms"]
    head += ["gap us/chunk", "+gap us", "messages", "unary ms", "cache hits"]
    body = []
    for name in hits:
        s = r[f"{name} stream"]
        unary = r.get(f"{name} unary", {}).get("ms")
        body.append(
            [
                name, fmt(s["ttfc"].p50), fmt(paired_added(s["ttfc"], d["ttfc"])),
                fmt(s["ttfc"].p99), fmt(s["total"].p50), fmt(1e3 * s["gap"].p50, 0),
                fmt(1e3 * paired_added(s["gap"], d["gap"]), 0), fmt(s["deltas"].p50, 0),
                fmt(unary.p50) if unary else "", hits[name],
            ]
        )  # fmt: skip
    print(text_table(head, body))
    print(
        f"{ANSWER_CHUNKS}-chunk answers; gap = spread of the chunks' arrival / "
        f"{ANSWER_CHUNKS - 1}; messages = text messages the client received; + = added over D"
    )


def main(argv: list[str] | None = None) -> int:
    args = suite_arguments(__doc__).parse_args(argv)
    print(versions())
    results, hits = run(Plan.from_args(args))
    report(results, hits)
    write_rows(rows(results), args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

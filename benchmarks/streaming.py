"""Streaming overhead with the default guards: when the first chunk of an 8-chunk answer
reaches the client, and what each hop adds per chunk.

Two node set-ups, both FakeEngine (the deterministic test engine):
- paced (benchmarks.paced_node, PACE_MS between chunks, like a model producing tokens):
  paths D, R lean (pinned model) and R default (shipped config, distinct prompts), each
  measured unary and streaming in the same interleaved rounds. A router that holds text back
  shows it here: its first chunk comes up to 7 x PACE_MS late.
  Target (issue 12): added time to first chunk <= added unary p50 + 1 ms (the summary states
  it as first chunk / (unary + 1 ms) <= 1).
- burst (`mesh node --engine fake`, chunks back to back): paths D, N (the do-nothing relay),
  R lean and R unguarded (lean with no guards), streaming. The spread of the chunks' arrival is
  each hop's own cost of passing a chunk on. Target: added per-chunk gap <= 1.2 x N's; R
  unguarded shows how much of R lean's is the output guards' check of each chunk.

Run: python -m benchmarks.streaming [--quick]
"""

from __future__ import annotations

import asyncio
import math
import sys
from dataclasses import replace

from benchmarks.clients import ANSWER_CHUNKS, open_paths
from benchmarks.fleet import Fleet, Started, fleet, start_mesh_paths
from benchmarks.harness import Probe, interleaved, loopback, timed, versions, warm_up
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

PACE_MS = 5.0
PACED_ROUTERS = {"R lean": "lean", "R default": "default"}
UNARY = ("D node", "R lean", "R default")  # paced paths measured unary too
BURST = {
    "D node": "D node burst",
    "N relay": "N relay burst",
    "R lean burst": "R lean burst",
    "R unguarded burst": "R unguarded burst",
}

Results = dict[str, dict[str, Figure]]


def start(f: Fleet) -> Started:
    paced = loopback()
    paced_pid = f.paced_node("paced node", paced, PACE_MS)
    started: Started = {"D node": (paced, {"node": paced_pid})}
    for name, kind in PACED_ROUTERS.items():
        addr = loopback()
        pid = f.router(name, kind, addr, [("paced-fake-node", paced)])
        started[name] = (addr, {"front": pid, "node": paced_pid})
    burst = start_mesh_paths(f, {"R lean burst": "lean", "R unguarded burst": "lean-unguarded"})
    started.update({BURST[name]: value for name, value in burst.items()})
    return started


def run(plan: Plan) -> tuple[Results, dict[str, str]]:
    with fleet() as f:
        started = start(f)

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
    out = []
    for name in PACED_ROUTERS:
        unary = paired_added(r[f"{name} unary"]["ms"], d_unary)
        ttfc = paired_added(r[f"{name} stream"]["ttfc"], d_stream["ttfc"])
        out.append(
            Row(
                f"{name}: added time to first chunk vs added unary p50 + 1 ms",
                f"first of {ANSWER_CHUNKS} chunks ({PACE_MS:g} ms apart) +{ttfc:.2f} ms, "
                f"unary +{unary:.2f} ms",
                ratio(ttfc, unary + 1.0), 1.0, "<=",
            )
        )  # fmt: skip
    d_gap = r["D node burst stream"]["gap"]
    gap_n = paired_added(r["N relay burst stream"]["gap"], d_gap)
    lean = r["R lean burst stream"]
    gap = paired_added(lean["gap"], d_gap)
    unguarded = paired_added(r["R unguarded burst stream"]["gap"], d_gap)
    gap_row = Row(
        "R lean: added per-chunk gap vs N's (chunks back to back)",
        f"+{1e3 * gap:.0f} us / N +{1e3 * gap_n:.0f} us (R with no guards +{1e3 * unguarded:.0f})",
        ratio(gap, gap_n), 1.2, "<=",
    )  # fmt: skip
    if lean["deltas"].p50 < ANSWER_CHUNKS:  # chunks held back and sent together: no gap
        gap_row = replace(
            gap_row,
            measured=f"{lean['deltas'].p50:.0f} message(s) for {ANSWER_CHUNKS} chunks (held back)",
            value=math.inf,
        )
    return [*out, gap_row]


def report(r: Results, hits: dict[str, str]) -> None:
    head = ["path", "first chunk ms", "+first chunk", "p99 first", "whole stream ms"]
    head += ["gap us/chunk", "+gap us", "messages", "unary ms", "+unary ms", "cache hits"]
    body = []
    for name in hits:
        d = r["D node burst stream" if name in BURST.values() else "D node stream"]
        s = r[f"{name} stream"]
        unary = r.get(f"{name} unary", {}).get("ms")
        added_unary = paired_added(unary, r["D node unary"]["ms"]) if unary else math.nan
        body.append(
            [
                name, fmt(s["ttfc"].p50), fmt(paired_added(s["ttfc"], d["ttfc"])),
                fmt(s["ttfc"].p99), fmt(s["total"].p50), fmt(1e3 * s["gap"].p50, 0),
                fmt(1e3 * paired_added(s["gap"], d["gap"]), 0), fmt(s["deltas"].p50, 0),
                fmt(unary.p50) if unary else "", fmt(added_unary) if unary else "", hits[name],
            ]
        )  # fmt: skip
    print(text_table(head, body))
    print(
        f"{ANSWER_CHUNKS}-chunk answers; paced paths: {PACE_MS:g} ms between chunks; burst "
        f"paths: back to back; gap = spread of the chunks' arrival / {ANSWER_CHUNKS - 1}; "
        "messages = text messages the client received; + = added over the D of the same node "
        "(median of round differences)"
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

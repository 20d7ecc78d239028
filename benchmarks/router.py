"""Router overhead (BENCH.md method): the paths below in interleaved rounds, each server in its
own process, figures as medians of round medians and as ratios against D and N of the same run.

- D: client -> node; N: client -> do-nothing grpc.aio relay -> node (the floor of a hop);
- R lean: the minimum router (benchmarks.fleet), model pinned;
- R lean-untraced: R lean with telemetry off (the cost of tracing at 100 % sampling);
- R default: the shipped default config on distinct prompts (no cache hits): what a user gets
  with one model (a one-tier catalogue: no tier estimate, none could change the decision);
- R default-hit: the default config on one repeated prompt (response-cache hits);
- R default 3-tier: the default config over three nodes (small, medium, frontier) on distinct
  prompts: the tier estimate runs (static model first, MiniLM where it is near a bound).

The node runs FakeEngine (a fast deterministic test engine, named as such) so what is measured
is the mesh's own cost.

Run: python -m benchmarks.router [--quick]
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.clients import PathResult, hits_and_errors, measure_unary, open_paths, repeated
from benchmarks.fleet import fleet, start_mesh_paths, start_tiered_router
from benchmarks.harness import cpu_note, versions
from benchmarks.prompts import distinct_prompts
from benchmarks.stats import (
    Plan,
    Row,
    fmt,
    paired_added,
    paired_ratio,
    ratio,
    suite_arguments,
    text_table,
    write_rows,
)

ROUTERS = {"R lean": "lean", "R lean-untraced": "lean-untraced", "R default": "default"}


def run(plan: Plan) -> dict[str, PathResult]:
    with fleet() as f:
        started = start_mesh_paths(f, ROUTERS)
        started["R default-hit"] = started["R default"]  # the same router, a repeated prompt
        node, roles = started["D node"]
        started.update(start_tiered_router(f, "R default 3-tier", node, roles["node"]))

        async def go() -> dict[str, PathResult]:
            async with open_paths(
                started,
                prompts=lambda name: repeated() if name.endswith("-hit") else distinct_prompts(),
                pinned=lambda name: not name.startswith("R default"),
            ) as paths:
                return await measure_unary(paths, plan)

        return asyncio.run(go())


def rows(results: dict[str, PathResult]) -> list[Row]:
    d, n = results["D node"], results["N relay"]
    lean, untraced = results["R lean"], results["R lean-untraced"]
    default, hit = results["R default"], results["R default-hit"]
    h_n = paired_added(n.latency, d.latency)
    h_lean = paired_added(lean.latency, d.latency)
    tracing_pct = 100 * (paired_ratio(lean.latency, untraced.latency) - 1)
    return [
        Row(
            "R lean added p50 vs relay's hop",
            f"R lean +{h_lean:.2f} ms / N +{h_n:.2f} ms",
            ratio(h_lean, h_n), 1.5, "<=",
        ),
        Row(
            "R lean c32 throughput vs direct",
            f"{lean['rps_c32']:.0f} / {d['rps_c32']:.0f} rps",
            ratio(lean["rps_c32"], d["rps_c32"]), 0.50, ">=",
        ),
        Row(
            "router RSS idle, default config",
            f"{default['idle_mb_front']:.0f} MB", default["idle_mb_front"], 250, "<=", "MB",
        ),
        Row(
            "router RSS idle, lean",
            f"{lean['idle_mb_front']:.0f} MB", lean["idle_mb_front"], 90, "<=", "MB",
        ),
        Row(
            "tracing at 100 % sampling: added latency",
            f"+{tracing_pct:.0f} %: R lean {lean['p50_ms']:.2f} ms, "
            f"untraced {untraced['p50_ms']:.2f} ms",
            tracing_pct, 10, "<=", "%",
        ),
        Row(
            "R default-hit end to end vs D (BENCH)",
            f"{hit['p50_ms']:.2f} / {d['p50_ms']:.2f} ms",
            paired_ratio(hit.latency, d.latency), 1.2, "<=",
        ),
    ]  # fmt: skip


def report(results: dict[str, PathResult], plan: Plan) -> None:
    d = results["D node"]
    head = ["path", "p50 ms", "+p50 ms", "p99 ms", "rps c1", "rps c8", "rps c32"]
    head += ["cpu ms/req front", "cpu ms/req node", "RSS idle MB front", "RSS peak MB front"]
    head += ["cache hits"]
    body = []
    for name, r in results.items():
        body.append(
            [
                name, fmt(r["p50_ms"]), fmt(paired_added(r.latency, d.latency)), fmt(r["p99_ms"]),
                fmt(r["rps_c1"], 0), fmt(r["rps_c8"], 0), fmt(r["rps_c32"], 0),
                fmt(r.get("cpu_ms_front", float("nan"))), fmt(r["cpu_ms_node"]),
                fmt(r.get("idle_mb_front", r["idle_mb_node"]), 0),
                fmt(r.get("peak_mb_front", r["peak_mb_node"]), 0),
                hits_and_errors(r),
            ]
        )  # fmt: skip
    print(text_table(head, body))
    print(
        f"node RSS idle {d['idle_mb_node']:.0f} MB, peak {d['peak_mb_node']:.0f} MB; "
        "cpu ms/req at concurrency 32; +p50 = added over D (median of round differences); "
        "D's 'front' is the node itself; " + cpu_note(plan.throughput_requests)
    )
    lean, untraced = results["R lean"], results["R lean-untraced"]
    share = ratio(
        paired_added(lean.latency, untraced.latency), paired_added(lean.latency, d.latency)
    )
    print(f"tracing: {100 * share:.0f} % of R lean's added p50")
    one, three = results["R default"], results["R default 3-tier"]
    print(
        "tier estimate (R default 3-tier over R default): "
        f"+{paired_added(three.latency, one.latency):.2f} ms p50, "
        f"router CPU {three.get('cpu_ms_front', float('nan')):.2f} vs "
        f"{one.get('cpu_ms_front', float('nan')):.2f} ms/req at c32, "
        f"c32 {three['rps_c32']:.0f} vs {one['rps_c32']:.0f} rps"
    )


def main(argv: list[str] | None = None) -> int:
    args = suite_arguments(__doc__).parse_args(argv)
    print(versions())
    plan = Plan.from_args(args)
    results = run(plan)
    report(results, plan)
    write_rows(rows(results), args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

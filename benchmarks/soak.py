"""Memory under sustained load (BENCH.md: ≤ 5 MB growth over a 60 s soak at concurrency 32).

Each path (PATHS: the do-nothing relay, R lean, R default, and streams abandoned after their
first chunk through the relay and R default; benchmarks.fleet) runs alone in front of a
FakeEngine node (a fast deterministic test engine, named as such) and takes 32 callers sending
distinct prompts without pause: first a warm-up, then the soak, reading the front's RSS every
few seconds. Each router row is printed beside the relay's growth on the same kind of load.

What a router is meant to hold grows until its bound and then stops: the response cache is
bounded here at SoakPlan.cache_entries rows (the shipped bound, 10,000, would still be filling
during the soak: its rows and the semantic index's pages are the cache working, not a leak),
and the warm-up serves more distinct prompts than that, so it is full before the first reading.
Everything else a request leaves behind (spans, ledger rows, guard memos, breaker and affinity
state, gRPC call objects, a stream its client cancelled) must not grow: the growth over the soak
is the median of the last EDGE_READINGS readings minus that of the first; the slope of a
least-squares line through every reading is printed beside it.

tests/reliability/test_soak.py asserts the same bound on 32 streams through a lean router in
`make test`; this suite adds the shipped default config (semantic cache, tier estimate) and
streams abandoned after their first chunk, as `make bench` rows.

Run: python -m benchmarks.soak [--quick] [--rows FILE]
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace

import grpc.aio

from benchmarks.clients import GrpcPath, open_paths, stream_request
from benchmarks.fleet import fleet, start_mesh_paths
from benchmarks.harness import REQUEST_TIMEOUT_S, rss_mb, versions
from benchmarks.prompts import distinct_prompts
from benchmarks.stats import Row, suite_arguments, text_table, write_rows

ROUTERS = {"R lean": "lean", "R default": "default"}
CONCURRENCY = 32
GROWTH_TARGET_MB = 5.0
# Growth is the median of the last readings minus that of the first: one reading taken while
# the allocator holds a burst's garbage must not decide the row.
EDGE_READINGS = 3


@dataclass(frozen=True)
class SoakPlan:
    cache_entries: int
    warmup_s: float
    soak_s: float
    every_s: float

    @classmethod
    def of(cls, quick: bool, soak_s: float | None = None) -> SoakPlan:
        plan = cls(cache_entries=1000, warmup_s=20, soak_s=60, every_s=5)
        if quick:
            plan = cls(cache_entries=200, warmup_s=6, soak_s=12, every_s=2)
        return replace(plan, soak_s=soak_s or plan.soak_s)


@dataclass(frozen=True)
class Soak:
    readings: list[tuple[float, float]]  # (seconds into the soak, router RSS MB)
    requests: int
    path: GrpcPath

    @property
    def first_mb(self) -> float:
        return statistics.median(mb for _, mb in self.readings[:EDGE_READINGS])

    @property
    def last_mb(self) -> float:
        return statistics.median(mb for _, mb in self.readings[-EDGE_READINGS:])

    @property
    def growth_mb(self) -> float:
        return self.last_mb - self.first_mb

    @property
    def slope_mb_per_min(self) -> float:
        times, sizes = zip(*self.readings, strict=True)
        return 60 * statistics.linear_regression(times, sizes).slope


def endless_distinct() -> Iterator[str]:
    """The bench's distinct prompts, then again with a request number: never the same text."""
    base = list(distinct_prompts())
    for i in itertools.count():
        text = base[i % len(base)]
        yield text if i < len(base) else f"{text} (request {i})"


async def first_chunk_then_cancel(path: GrpcPath) -> bool:
    """A GenerateStream its client walks away from after the first text chunk: the router must
    let go of what the stream held (the upstream call, guard state, spans) as for a whole one."""
    request = stream_request(next(path.prompts), pinned=path.pinned)
    call = path.stub.GenerateStream(request, timeout=REQUEST_TIMEOUT_S)
    try:
        async for event in call:
            if event.HasField("delta") and event.delta.text:
                break
    except grpc.aio.AioRpcError as err:
        path.count_error(err)
        return False
    finally:
        call.cancel()
    path.sent += 1
    return True


Caller = Callable[[GrpcPath], Awaitable[bool]]


@dataclass(frozen=True)
class SoakPath:
    front: str  # the started path it loads (benchmarks.fleet names)
    call: Caller  # one request
    baseline: str | None = None  # the relay's soak path on the same kind of load (routers)


PATHS = {
    "N relay": SoakPath("N relay", GrpcPath.call),
    "R lean": SoakPath("R lean", GrpcPath.call, "N relay"),
    "R default": SoakPath("R default", GrpcPath.call, "N relay"),
    "N relay, streams cancelled": SoakPath("N relay", first_chunk_then_cancel),
    "R default, streams cancelled": SoakPath(
        "R default", first_chunk_then_cancel, "N relay, streams cancelled"
    ),
}


async def load(path: GrpcPath, call: Caller, seconds: float, every_s: float, pid: int) -> Soak:
    """CONCURRENCY callers for `seconds`, reading the router's RSS every `every_s`."""
    stop = time.monotonic() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await call(path)
            done += 1

    start = time.monotonic()
    readings = [(0.0, rss_mb(pid))]
    callers = asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    while time.monotonic() + every_s <= stop:
        await asyncio.sleep(every_s)
        readings.append((time.monotonic() - start, rss_mb(pid)))
    await callers
    readings.append((time.monotonic() - start, rss_mb(pid)))
    return Soak(readings, done, path)


def run(plan: SoakPlan) -> dict[str, Soak]:
    with fleet() as f:
        started = start_mesh_paths(f, ROUTERS, cache_entries=plan.cache_entries)
        chosen = {name: started[name] for name in {p.front for p in PATHS.values()}}

        async def go() -> dict[str, Soak]:
            async with open_paths(
                chosen,
                prompts=lambda _: endless_distinct(),
                pinned=lambda name: not name.startswith("R default"),
            ) as paths:
                out = {}
                for name, soak_path in PATHS.items():  # one at a time: each has the machine
                    path, call = paths[soak_path.front], soak_path.call
                    pid = path.processes["front"]
                    await load(path, call, plan.warmup_s, plan.warmup_s, pid)
                    out[name] = await load(path, call, plan.soak_s, plan.every_s, pid)
                return out

        return asyncio.run(go())


def report(results: dict[str, Soak], plan: SoakPlan) -> list[Row]:
    head = ["path", "requests", "rps", "RSS start MB", "RSS end MB", "growth MB", "MB/min"]
    head += ["cache hits"]
    body, rows = [], []
    for name, soak in results.items():
        first, last = soak.first_mb, soak.last_mb
        rps = soak.requests / soak.readings[-1][0]
        growth = [f"{soak.growth_mb:+.1f}", f"{soak.slope_mb_per_min:+.2f}"]
        sizes = [f"{first:.1f}", f"{last:.1f}", *growth]
        body.append([name, str(soak.requests), f"{rps:.0f}", *sizes, hits_and_errors_of(soak)])
    for name, soak in results.items():
        baseline = PATHS[name].baseline
        if baseline is not None:
            relay = results[baseline]
            rows.append(
                Row(
                    f"router RSS growth over a {plan.soak_s:.0f} s soak at c{CONCURRENCY}, "
                    f"{name.removeprefix('R ')}",
                    f"{soak.first_mb:.1f} -> {soak.last_mb:.1f} MB over {soak.requests} "
                    f"requests; the do-nothing relay's {relay.growth_mb:+.1f} MB",
                    soak.growth_mb, GROWTH_TARGET_MB, "<=", "MB",
                )
            )  # fmt: skip
    print(text_table(head, body))
    for name, soak in results.items():
        series = ", ".join(f"{mb:.1f}" for _, mb in soak.readings)
        print(f"{name} RSS MB every {plan.every_s:.0f} s: {series}")
    print(
        f"response cache bounded at {plan.cache_entries} rows (full before the soak: the "
        f"warm-up sends more distinct prompts); readings every {plan.every_s:.0f} s; "
        f"{plan.warmup_s:.0f} s warm-up at c{CONCURRENCY} first"
    )
    return rows


def hits_and_errors_of(soak: Soak) -> str:
    """The path's cache hits over all it answered (warm-up included), and its errors."""
    path = soak.path
    text = f"{path.cache_hits}/{path.sent}"
    return text + (f", {path.errors} errors" if path.errors else "")


def main(argv: list[str] | None = None) -> int:
    parser = suite_arguments(__doc__)
    parser.add_argument("--seconds", type=float, help="soak this long (a longer look at a trend)")
    args = parser.parse_args(argv)
    print(versions())
    plan = SoakPlan.of(args.quick, args.seconds)
    results = run(plan)
    write_rows(report(results, plan), args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

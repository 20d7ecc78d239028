"""Tracing cost: what the SQLite span exporter costs per span, and what a traced request costs.

Method (BENCH.md): these machines are shared and noisy, so every figure is printed as a ratio
against a baseline measured in the same run, in interleaved rounds, median of round medians.

1. Exporter: the same realistic spans (a router trace: server span, two guard-chain spans
   with per-guard events, route span, attempt span) written to a fresh SQLite store in
   batches, by the store's exporter now and by the exporter as it was before this benchmark
   (`PreviousSqliteExporter`, a frozen copy: StoredSpan dataclass, then json.dumps). Figures:
   spans/s sustained (wall) and CPU µs per span on the writing thread; row building alone is
   pure Python, i.e. GIL time the event loop waits for.
2. Hot path: requests on one event loop, 8 at a time (fixed CPU work standing in for the
   router, the request's spans, a 1 ms wait standing in for the upstream), with the
   BatchSpanProcessor and the store exporting on its thread, as in a router: p50 and p99 per
   request and throughput, against the same loop untraced.
   Two trace shapes: the previous one (11 spans: server, 7 guard spans, route, attempt and the
   client interceptor's span) and the current one (server, 2 guard-chain spans with 7 events,
   route, attempt: 5 spans), each with the exporter and processor settings of its time.
3. Guard chain: the default input policy on a 1 KB prompt, inside a recorded span and not;
   the ratio is what tracing adds to a chain run (run this file with PYTHONPATH pointing at an
   older checkout to compare with one span per guard).

Run: .venv/bin/python -m benchmarks.tracing [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, Tracer

from mesh.telemetry import semconv as sc
from mesh.telemetry import span_store

GUARDS_IN = ("pii", "secrets", "prompt_injection", "token_limit")
GUARDS_OUT = ("pii", "secrets", "system_prompt_leakage")
GENERATE = "/mesh.v1.InferenceService/Generate"
RPC_ATTRIBUTES = {
    "rpc.system": "grpc",
    "rpc.service": "mesh.v1.InferenceService",
    "rpc.method": "Generate",
    "rpc.grpc.status_code": 0,
}
PROMPT_1KB = (
    "Hi team, please summarise the attached quarterly report for the board. Focus on revenue, "
    "churn and the hiring plan; keep it under two hundred words and use plain language. The "
    "numbers: revenue grew 12.5% to 4.2 million, churn fell from 3.1% to 2.7%, and we plan to "
    "hire 14 engineers in 2025. Contact me at the usual address if anything is unclear. "
) * 4


# --- the exporter as it was (baseline only) --------------------------------------------------
PREVIOUS_INSERT = """
INSERT OR REPLACE INTO spans (trace_id, span_id, parent_id, name, kind, service, start_ns,
    end_ns, status, status_message, attributes, events, request_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


class PreviousSqliteExporter(SpanExporter):
    """Benchmark baseline only: the store's exporter before this benchmark was written (each
    span converted to a StoredSpan, then attributes and events through json.dumps)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = span_store.connect(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = [self.row(span) for span in spans]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(PREVIOUS_INSERT, rows)
            self._conn.execute("COMMIT")
        return SpanExportResult.SUCCESS

    @staticmethod
    def row(span: ReadableSpan) -> tuple[Any, ...]:
        ctx = span.get_span_context()
        assert ctx is not None
        resource = span.resource.attributes if span.resource else {}
        attributes = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dict(span.attributes or {}).items()
        }
        events = [
            {
                "name": e.name,
                "time_unix_nano": e.timestamp,
                "attributes": {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in dict(e.attributes or {}).items()
                },
            }
            for e in span.events
        ]
        stored = span_store.StoredSpan(
            trace_id=f"{ctx.trace_id:032x}",
            span_id=f"{ctx.span_id:016x}",
            parent_id=f"{span.parent.span_id:016x}" if span.parent else None,
            name=span.name,
            kind=span.kind.name,
            service=str(resource.get(sc.SERVICE_NAME, "unknown")),
            start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0,
            status=span.status.status_code.name,
            status_message=span.status.description or "",
            attributes=attributes,
            events=events,
        )
        request_id = stored.attributes.get(sc.MESH_REQUEST_ID)
        return (
            stored.trace_id,
            stored.span_id,
            stored.parent_id,
            stored.name,
            stored.kind,
            stored.service,
            stored.start_ns,
            stored.end_ns,
            stored.status,
            stored.status_message,
            json.dumps(stored.attributes, default=str),
            json.dumps(stored.events, default=str),
            str(request_id) if request_id else None,
        )

    def shutdown(self) -> None:
        with self._lock:
            self._conn.close()


# --- request-shaped spans ----------------------------------------------------------------------
def previous_trace_shape(tracer: Tracer, n: int) -> None:
    """11 spans, as a routed request made before: a span per guard, and the client
    interceptor's CLIENT span under the attempt span."""
    with tracer.start_as_current_span(GENERATE, kind=SpanKind.SERVER, attributes=RPC_ATTRIBUTES):
        sc.tag_request(f"req-{n}", tenant="default")
        for stage, guards in (("input", GUARDS_IN), ("output", GUARDS_OUT)):
            target = sc.TARGET_LLM_OUTPUT if stage == "output" else sc.TARGET_LLM_INPUT
            for guard in guards:
                span = tracer.start_span(
                    f"apply_guardrail {guard} {target}",
                    attributes={
                        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_APPLY_GUARDRAIL,
                        sc.GEN_AI_GUARDIAN_NAME: guard,
                        sc.GEN_AI_SECURITY_TARGET_TYPE: target,
                        sc.MESH_GUARD_STAGE: stage,
                        sc.GEN_AI_SECURITY_POLICY_ID: "default",
                        sc.GEN_AI_SECURITY_POLICY_VERSION: "3f2a9c",
                    },
                )
                sc.record_verdict(span, action="allow")
                span.set_attribute(sc.MESH_GUARD_MODE, "enforce")
                span.end()
        _route_and_attempt(tracer, n, client_span=True)


def current_trace_shape(tracer: Tracer, n: int) -> None:
    """5 spans: one guard-chain span per stage with an event per guard, no interceptor span."""
    with tracer.start_as_current_span(GENERATE, kind=SpanKind.SERVER, attributes=RPC_ATTRIBUTES):
        sc.tag_request(f"req-{n}", tenant="default")
        for stage, guards in (("input", GUARDS_IN), ("output", GUARDS_OUT)):
            with sc.guard_chain_span(
                stage,
                guards=len(guards),
                policy_id="default",
                policy_version="3f2a9c",
                tracer=tracer,
            ) as chain:
                now = time.time_ns()
                for guard in guards:
                    sc.record_guard_event(
                        chain, guard, action="allow", end_ns=now, duration_ns=20_000, mode="enforce"
                    )
                sc.record_chain_verdict(chain, action="allow")
        _route_and_attempt(tracer, n, client_span=False)


def _route_and_attempt(tracer: Tracer, n: int, *, client_span: bool) -> None:
    with sc.route_span("cheapest", request_id=f"req-{n}", tracer=tracer) as route:
        sc.record_route(
            route,
            node="gpu-1",
            model="smollm2",
            provider="self-hosted",
            candidates=3,
            reason="cheapest healthy",
            estimated_cost_usd=0.00002,
            baseline_cost_usd=0.001,
        )
        with sc.attempt_span(
            "smollm2",
            "self-hosted",
            node="gpu-1",
            server_address="127.0.0.1:50052",
            rpc_method=None if client_span else GENERATE,
            tracer=tracer,
        ) as attempt:
            if client_span:
                tracer.start_span(GENERATE, kind=SpanKind.CLIENT, attributes=RPC_ATTRIBUTES).end()
            else:
                sc.outgoing_metadata(attempt)
            sc.record_input(attempt, [("user", "hello")])
            sc.record_usage(
                attempt,
                input_tokens=12,
                output_tokens=30,
                response_model="smollm2",
                finish_reasons=["stop"],
            )
        sc.record_route_result(route, attempts=1, actual_cost_usd=0.00002)


def _provider(*processors: Any, sampler: Any = None) -> TracerProvider:
    resource = Resource.create({"service.name": "router"})
    provider = (
        TracerProvider(resource=resource, sampler=sampler)
        if sampler is not None
        else TracerProvider(resource=resource)
    )
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def sample_spans(requests: int) -> list[ReadableSpan]:
    """Finished spans of `requests` current-shape traces (5 spans each)."""
    memory = InMemorySpanExporter()
    provider = _provider(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for n in range(requests):
        current_trace_shape(tracer, n)
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans


# --- 1. exporter ------------------------------------------------------------------------------
def _export_all(exporter: SpanExporter, spans: Sequence[ReadableSpan], batch: int) -> None:
    for i in range(0, len(spans), batch):
        exporter.export(spans[i : i + batch])


def exporter_round(
    make: Callable[[Path], SpanExporter], spans: Sequence[ReadableSpan], batch: int
) -> tuple[float, float]:
    """(spans/s wall, CPU µs per span on this thread) writing `spans` to a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        exporter = make(Path(tmp) / "traces.db")
        cpu, wall = time.thread_time(), time.perf_counter()
        _export_all(exporter, spans, batch)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        exporter.shutdown()
    return len(spans) / wall, cpu / len(spans) * 1e6


def row_cost_us(row: Callable[[ReadableSpan], object], spans: Sequence[ReadableSpan]) -> float:
    """Pure-Python µs per span to build rows: GIL time, nothing released."""
    start = time.thread_time()
    for span in spans:
        row(span)
    return (time.thread_time() - start) / len(spans) * 1e6


def bench_exporter(rounds: int, requests: int) -> None:
    spans = sample_spans(requests)
    print(f"\n1. exporter: {len(spans)} spans per round ({requests} traces), batches of 512")
    current_row = span_store.SqliteSpanExporter.row_of  # type: ignore[attr-defined]
    results: dict[str, list[tuple[float, float, float]]] = {"previous": [], "current": []}
    for _ in range(rounds):
        prev_rate, prev_cpu = exporter_round(PreviousSqliteExporter, spans, 512)
        prev_row = row_cost_us(PreviousSqliteExporter.row, spans)
        results["previous"].append((prev_rate, prev_cpu, prev_row))
        cur_rate, cur_cpu = exporter_round(span_store.SqliteSpanExporter, spans, 512)
        cur_row = row_cost_us(current_row, spans)
        results["current"].append((cur_rate, cur_cpu, cur_row))
    med = {
        k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in results.items()
    }
    print(f"   {'':10s} {'spans/s':>10s} {'CPU µs/span':>12s} {'row µs/span':>12s}")
    for name, (rate, cpu, row) in med.items():
        print(f"   {name:10s} {rate:10.0f} {cpu:12.1f} {row:12.1f}")
    p, c = med["previous"], med["current"]
    print(
        f"   current / previous: spans/s {c[0] / p[0]:.2f}x, CPU per span {c[1] / p[1]:.2f}x, "
        f"row building {c[2] / p[2]:.2f}x"
    )


# --- 2. hot path ------------------------------------------------------------------------------
def _work(iterations: int) -> int:
    """Fixed CPU work standing in for the router's own per-request Python."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


async def _serve(
    shape: Callable[[Tracer, int], None],
    tracer: Tracer,
    requests: int,
    work: int,
    concurrency: int,
    upstream_s: float,
) -> tuple[list[float], float]:
    """Requests on an event loop, `concurrency` at a time: router work and the request's spans,
    then a wait standing in for the upstream (when the loop idles in epoll, as a router's does,
    and the exporter thread gets the GIL). Per-request latencies (s) and requests/s."""
    pending = iter(range(requests))
    latencies: list[float] = []

    async def client() -> None:
        for n in pending:
            start = time.perf_counter()
            _work(work)
            shape(tracer, n)
            await asyncio.sleep(upstream_s)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, requests / (time.perf_counter() - start)


def _traced(tmp: Path, previous: bool) -> tuple[TracerProvider, Callable[[Tracer, int], None]]:
    if previous:
        processor = BatchSpanProcessor(
            PreviousSqliteExporter(tmp / "previous.db"),
            schedule_delay_millis=500,
            max_queue_size=16384,
            max_export_batch_size=512,
        )
        return _provider(processor), previous_trace_shape
    from mesh.telemetry.setup import span_store_processor

    processor = span_store_processor(tmp / "current.db", retention_hours=None)
    return _provider(processor), current_trace_shape


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def bench_hot_path(rounds: int, requests: int, work: int) -> None:
    concurrency, upstream_s = 8, 0.001
    print(
        f"\n2. hot path: {requests} requests per round on one event loop, {concurrency} at a "
        f"time, {work} steps of fixed work + spans + a {upstream_s * 1e3:.0f} ms upstream wait; "
        "spans exported to SQLite on the processor's thread"
    )
    stats: dict[str, list[tuple[float, float, float, float]]] = {}
    untraced_provider = _provider(sampler=ALWAYS_OFF)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        configs = {
            "untraced": (untraced_provider, current_trace_shape),
            **{name: _traced(tmp, name == "previous") for name in ("previous", "current")},
        }
        for _ in range(rounds):
            for name, (provider, shape) in configs.items():
                cpu = time.process_time()
                latencies, rate = asyncio.run(
                    _serve(
                        shape, provider.get_tracer("bench"), requests, work, concurrency, upstream_s
                    )
                )
                provider.force_flush()  # every span stored: its export counts in the CPU
                cpu_us = (time.process_time() - cpu) / requests * 1e6
                stats.setdefault(name, []).append(
                    (statistics.median(latencies), _percentile(latencies, 0.99), rate, cpu_us)
                )
        for provider, _shape in configs.values():
            provider.shutdown()
    med = {
        name: tuple(statistics.median(r[i] for r in runs) for i in range(4))
        for name, runs in stats.items()
    }
    base_cpu = med["untraced"][3]
    print(
        f"   {'':9s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s} {'CPU µs/req':>11s}  tracing adds"
    )
    for name, (p50, p99, rate, cpu_us) in med.items():
        added = f"+{cpu_us - base_cpu:.0f} µs CPU/req" if name != "untraced" else ""
        print(f"   {name:9s} {p50 * 1e3:8.3f} {p99 * 1e3:8.3f} {rate:8.0f} {cpu_us:11.0f}  {added}")
    prev, cur = med["previous"], med["current"]
    if prev[3] > base_cpu:
        added = (cur[3] - base_cpu) / (prev[3] - base_cpu)
        print(
            f"   current / previous: CPU added per request {added:.2f}x, throughput "
            f"{cur[2] / prev[2]:.2f}x, p50 {cur[0] / prev[0]:.2f}x, p99 {cur[1] / prev[1]:.2f}x"
        )
    print(f"   traced CPU per request over untraced: current +{(cur[3] / base_cpu - 1) * 100:.0f}%")


# --- 3. guard chain ---------------------------------------------------------------------------
def bench_chain(rounds: int, runs: int) -> None:
    from guards.hooks import InputCheck
    from guards.policy_store import PolicyStore
    from guards.verdict import Stage

    memory = InMemorySpanExporter()
    provider = _provider(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    chain = PolicyStore.from_file(tracer=tracer).chain(Stage.INPUT)
    # A new text each run, the same length: the chain remembers the texts it allowed.
    texts = (f"{PROMPT_1KB[:-9]} {i:08d}" for i in itertools.count())

    async def timed(traced: bool) -> float:
        samples = []
        for _ in range(runs):
            if traced:
                with tracer.start_as_current_span("request"):
                    check = InputCheck(next(texts))
                    start = time.perf_counter()
                    await chain.run(check)
                    samples.append(time.perf_counter() - start)
            else:
                check = InputCheck(next(texts))
                start = time.perf_counter()
                await chain.run(check)
                samples.append(time.perf_counter() - start)
        memory.clear()
        return statistics.median(samples) * 1e6

    async def main() -> tuple[list[float], list[float], int]:
        plain, traced = [], []
        for _ in range(rounds):
            plain.append(await timed(False))
            traced.append(await timed(True))
        with tracer.start_as_current_span("request"):
            await chain.run(InputCheck(next(texts)))
        return plain, traced, len(memory.get_finished_spans()) - 1

    plain, traced, spans = asyncio.run(main())
    p, t = statistics.median(plain), statistics.median(traced)
    print(f"\n3. default input chain, 1 KB prompt, {len(chain.guards)} guards")
    print(f"   untraced {p:.0f} µs; traced {t:.0f} µs ({spans} spans per run): x{t / p:.2f}")
    provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", choices=("exporter", "hot", "chain"))
    args = parser.parse_args()
    requests, work = (200, 500) if args.quick else (2000, 1500)
    print(f"python {platform.python_version()}  grpcio {grpc.__version__}  (compare ratios)")
    if args.only in (None, "exporter"):
        bench_exporter(args.rounds, requests)
    if args.only in (None, "hot"):
        bench_hot_path(args.rounds, requests, work)
    if args.only in (None, "chain"):
        bench_chain(args.rounds, 50 if args.quick else 300)


if __name__ == "__main__":
    main()

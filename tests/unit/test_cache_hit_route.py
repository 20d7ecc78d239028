"""A semantic hit explains itself: similarity and the verifier's verdict on RouteInfo and span."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh.config import BaselineSettings, BudgetSettings
from mesh.router.accounting import Accounting
from mesh.router.budget import BudgetTracker
from mesh.router.cache import CacheHit
from mesh.router.pipeline.settle import Settle
from mesh.telemetry import semconv as sc
from mesh.v1 import types_pb2 as t
from tests.unit.test_router_pipeline import context


def _hit(kind: str, verification: str, vetoed: int = 0) -> CacheHit:
    usage = t.Usage(input_tokens=10, output_tokens=20, cost_usd=0.002)
    return CacheHit(
        "Paris.",
        usage,
        "smol",
        "n1",
        t.FINISH_REASON_STOP,
        kind,
        0.873,
        12.0,
        t.MODEL_TIER_SMALL,
        verification,
        vetoed,
    )


def _settle_hit(hit: CacheHit) -> tuple[t.RouteInfo, dict[str, object]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    settle = Settle(Accounting(BudgetTracker(BudgetSettings()), BaselineSettings()), None, None)
    with provider.get_tracer("t").start_as_current_span("route") as span:
        route, usage = settle.cache_hit(context(), hit, "cheapest", span)
    assert usage.cost_usd == 0.0 and route.cache_hit
    (finished,) = memory.get_finished_spans()
    return route, dict(finished.attributes or {})


def test_a_semantic_hit_names_its_similarity_and_verification() -> None:
    verification = "verified: same question (1 typo)"
    route, attrs = _settle_hit(_hit("semantic", verification, vetoed=2))
    assert route.reason.startswith(
        f"cache hit (semantic, similarity 0.873, {verification}, 2 nearer vetoed, age 12s)"
    )
    assert attrs[sc.MESH_CACHE_KIND] == "semantic"
    assert attrs[sc.MESH_CACHE_SIMILARITY] == 0.873
    assert attrs[sc.MESH_CACHE_VERIFICATION] == verification
    assert attrs[sc.MESH_CACHE_VETOED] == 2
    assert attrs[sc.MESH_ROUTE_REASON] == route.reason


def test_an_exact_hit_keeps_its_short_reason() -> None:
    route, attrs = _settle_hit(_hit("exact", "exact"))
    assert route.reason.startswith("cache hit (exact, similarity 0.873, age 12s)")
    assert attrs[sc.MESH_CACHE_KIND] == "exact" and attrs[sc.MESH_CACHE_VETOED] == 0

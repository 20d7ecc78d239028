"""The metrics facade's live load gauges and the per-generation recorder a node uses."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mesh.contract.errors import InvalidRequest, Overloaded
from mesh.telemetry.generation_metrics import observe_generation, status_of
from mesh.telemetry.metrics import MeshMetrics, NodeLoadSample

Points = dict[tuple[str, tuple[tuple[str, object], ...]], float]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> Iterator[MeshMetrics]:
    provider = MeterProvider(metric_readers=[reader])
    yield MeshMetrics(provider.get_meter("test"))
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> Points:
    """{(metric, sorted attributes): value}; histograms give their count."""
    data = reader.get_metrics_data()
    out: Points = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted((point.attributes or {}).items())))
                    out[key] = float(getattr(point, "value", getattr(point, "count", 0)))
    return out


def _gauge(points: Points, name: str, node: str) -> float | None:
    return points.get((name, (("mesh.node", node),)))


class _Node:
    def __init__(self) -> None:
        self.running = 0

    def sample(self) -> NodeLoadSample:
        return NodeLoadSample(self.running, 3, 0.25)


def test_live_load_is_read_at_collection(
    metrics: MeshMetrics, reader: InMemoryMetricReader
) -> None:
    node = _Node()
    metrics.watch_node_load("a", node.sample)
    metrics.set_node_load("b", running=1, waiting=0)  # pushed, e.g. from a heartbeat
    node.running = 2
    points = _points(reader)
    assert _gauge(points, "mesh.node.requests.running", "a") == 2
    assert _gauge(points, "mesh.node.requests.waiting", "a") == 3
    assert _gauge(points, "mesh.node.kv_cache.usage", "a") == 0.25
    assert _gauge(points, "mesh.node.requests.running", "b") == 1
    assert _gauge(points, "mesh.node.kv_cache.usage", "b") is None  # not reported: no point
    node.running = 5
    assert _gauge(_points(reader), "mesh.node.requests.running", "a") == 5


def test_a_gone_or_broken_load_source_is_dropped_not_fatal(
    metrics: MeshMetrics, reader: InMemoryMetricReader
) -> None:
    node = _Node()
    metrics.watch_node_load("gone", node.sample)  # a bound method: held weakly
    del node
    gc.collect()

    def broken() -> NodeLoadSample:
        raise RuntimeError("engine stats unavailable")

    metrics.watch_node_load("broken", broken)
    metrics.set_node_load("ok", running=4, waiting=0)
    points = _points(reader)
    assert _gauge(points, "mesh.node.requests.running", "gone") is None
    assert _gauge(points, "mesh.node.requests.running", "broken") is None
    assert _gauge(points, "mesh.node.requests.running", "ok") == 4
    metrics.unwatch_node_load("broken")


def test_status_of_matches_what_the_error_boundary_answers() -> None:
    assert status_of(InvalidRequest("bad")) == "INVALID_ARGUMENT"
    assert status_of(Overloaded("busy")) == "RESOURCE_EXHAUSTED"
    assert status_of(asyncio.CancelledError()) == "CANCELLED"
    assert status_of(GeneratorExit()) == "CANCELLED"
    assert status_of(ValueError("bug")) == "INTERNAL"


def test_one_generation_is_recorded_once_however_it_ends(
    metrics: MeshMetrics, reader: InMemoryMetricReader
) -> None:
    with observe_generation(metrics, provider="self-hosted", model="m", node="n") as rec:
        rec.request_id = "r1"
        rec.first_token()
        rec.first_token()  # once per request
        rec.usage(input_tokens=7, output_tokens=3)
    with (
        pytest.raises(InvalidRequest),
        observe_generation(metrics, provider="self-hosted", model="m", node="n"),
    ):
        raise InvalidRequest("bad")
    assert rec.status == "OK"
    rec.finish("INTERNAL")  # ignored: already recorded
    points = _points(reader)

    def count(name: str, **attrs: object) -> float:
        return sum(v for (n, a), v in points.items() if n == name and set(attrs.items()) <= set(a))

    assert count("mesh.requests", **{"mesh.status": "OK", "mesh.node": "n"}) == 1
    assert count("mesh.requests", **{"mesh.status": "INVALID_ARGUMENT"}) == 1
    assert count("gen_ai.server.time_to_first_token") == 1
    assert count("gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}) == 1
    assert count("gen_ai.client.operation.duration") == 2
    assert count("gen_ai.client.operation.duration", **{"error.type": "INVALID_ARGUMENT"}) == 1


def test_recording_without_metrics_is_a_no_op() -> None:
    with observe_generation(None, provider="p", model="m", node="n") as rec:
        rec.first_token()
        rec.usage(input_tokens=1, output_tokens=1)
    assert rec.status == "OK" and rec.first_token_s is not None

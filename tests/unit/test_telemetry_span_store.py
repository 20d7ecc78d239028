"""The SQLite span store: several writers, one file; lookups by trace, request and recency."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import format_trace_id

from mesh.telemetry import semconv as sc
from mesh.telemetry.span_store import SpanStore, SqliteSpanExporter, TraceNotFound


def _provider(service: str, store: Path) -> tuple[TracerProvider, SqliteSpanExporter]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = SqliteSpanExporter(store)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_two_writers_one_trace(tmp_path: Path) -> None:
    store = tmp_path / "deep" / "traces.db"
    router, _ = _provider("router", store)
    node, _ = _provider("node", store)
    with router.get_tracer("t").start_as_current_span("rpc") as root:
        sc.tag_request("req-1")
        with node.get_tracer("t").start_as_current_span("engine", attributes={"k": (1, 2)}):
            pass
    trace_id = format_trace_id(root.get_span_context().trace_id)
    for later in range(3):
        with router.get_tracer("t").start_as_current_span(f"later-{later}"):
            pass
    router.shutdown()
    node.shutdown()

    reader = SpanStore(store)
    spans = reader.trace(trace_id)
    assert [s.name for s in spans] == ["rpc", "engine"]
    assert {s.service for s in spans} == {"router", "node"}
    assert spans[1].parent_id == spans[0].span_id and spans[0].parent_id is None
    assert spans[1].attributes["k"] == [1, 2]
    assert reader.trace(trace_id[:10])[0].span_id == spans[0].span_id
    assert reader.trace_ids_for_request("req-1") == [trace_id]
    assert reader.trace_ids_for_request("nope") == []
    last = reader.last_trace_ids(2)
    assert len(last) == 2 and trace_id not in last
    assert len(reader.last_trace_ids(10)) == 4


def test_bad_lookups_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no span store"):
        SpanStore(tmp_path / "missing.db")
    SqliteSpanExporter(tmp_path / "t.db").shutdown()
    reader = SpanStore(tmp_path / "t.db")
    with pytest.raises(TraceNotFound, match="no trace"):
        reader.trace("abc")
    with pytest.raises(TraceNotFound, match="not a trace id"):
        reader.trace("x%")


def test_retention_prunes_old_spans_and_failed_writes_do_not_raise(tmp_path: Path) -> None:
    store = tmp_path / "t.db"
    provider, exporter = _provider("p", store)
    with provider.get_tracer("t").start_as_current_span("old"):
        pass
    provider.shutdown()
    assert SpanStore(store).last_trace_ids(5)
    SqliteSpanExporter(store, retention_hours=1e-9).shutdown()
    assert SpanStore(store).last_trace_ids(5) == []
    # After shutdown the exporter reports failure instead of raising into the span processor.
    assert exporter.export([]).name == "FAILURE"

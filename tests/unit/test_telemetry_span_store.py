"""The SQLite span store: several writers, one file; lookups by trace, request and recency."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id

from mesh.contract.errors import UpstreamUnavailable
from mesh.telemetry import semconv as sc
from mesh.telemetry.setup import span_store_processor
from mesh.telemetry.span_store import (
    ROWS_PER_INSERT,
    SpanStore,
    SqliteSpanExporter,
    StoredSpan,
    TraceNotFound,
    from_readable,
)


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
    pruner = SqliteSpanExporter(store, retention_hours=1e-9)
    # The constructor leaves the store alone (it may run on the event loop); the first batch,
    # on the processor's worker thread, keeps the bounds.
    assert SpanStore(store).last_trace_ids(5)
    pruner.export([])
    pruner.shutdown()
    assert SpanStore(store).last_trace_ids(5) == []
    # After shutdown the exporter reports failure instead of raising into the span processor.
    assert exporter.export([]).name == "FAILURE"


def test_stored_rows_read_back_as_the_sdk_spans(tmp_path: Path) -> None:
    """row_of builds rows straight from SDK spans; reading them back gives what from_readable
    (the plain conversion) says, for every column: ids, parent, kind, status, service,
    attributes with arrays and non-ASCII, events with their own attributes."""
    store = tmp_path / "t.db"
    provider = TracerProvider(resource=Resource.create({"service.name": "router"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(span_store_processor(store, retention_hours=None))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("rpc", kind=SpanKind.SERVER) as root:
        sc.tag_request("req-ü", tenant="acme")
        with sc.guard_chain_span("input", guards=1, policy_version="v1", tracer=tracer) as chain:
            sc.record_guard_event(
                chain,
                "pii",
                action="redact",
                categories=["EMAIL_ADDRESS", "PHONE"],
                end_ns=sc.now_ns(),
                duration_ns=42_000,
            )
            sc.record_chain_verdict(chain, action="redact", categories=["EMAIL_ADDRESS"])
        with pytest.raises(UpstreamUnavailable), sc.attempt_span("m", "p", tracer=tracer):
            raise UpstreamUnavailable("node n1 is down")
    provider.force_flush()
    expected = sorted((from_readable(s) for s in memory.get_finished_spans()), key=_start)
    stored = SpanStore(store).trace(format_trace_id(root.get_span_context().trace_id))
    provider.shutdown()
    assert [s.name for s in stored] == ["rpc", "apply_guardrail llm_input", "chat m"]
    assert sorted(stored, key=_start) == expected
    assert stored[2].status == "ERROR" and stored[2].kind == "CLIENT"
    assert stored[1].events[0]["attributes"][sc.GEN_AI_SECURITY_FINDING_CATEGORIES] == [
        "EMAIL_ADDRESS",
        "PHONE",
    ]
    assert SpanStore(store).trace_ids_for_request("req-ü") == [stored[0].trace_id]


def _start(span: StoredSpan) -> int:
    return span.start_ns


def test_a_batch_of_several_statements_is_stored_whole_or_not_at_all(tmp_path: Path) -> None:
    """Rows go ROWS_PER_INSERT to a statement: a batch of two full statements and a partial one
    is stored span for span, a span exported twice is one row, and a batch whose last statement
    fails leaves none of its rows (one transaction)."""
    store = tmp_path / "t.db"
    provider = TracerProvider(resource=Resource.create({"service.name": "router"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    count = 2 * ROWS_PER_INSERT + 7
    for i in range(count):
        with tracer.start_as_current_span(f"s{i}"):
            sc.tag_request(f"req-{i}")
    spans = list(memory.get_finished_spans())
    exporter = SqliteSpanExporter(store)
    assert exporter.export([*spans, spans[0]]).name == "SUCCESS"
    reader = SpanStore(store)
    stored = {s.name for t in reader.last_trace_ids(10 * count) for s in reader.trace(t)}
    assert stored == {f"s{i}" for i in range(count)}
    assert len(reader.last_trace_ids(10 * count)) == count

    with tracer.start_as_current_span("unstorable \ud800") as bad:  # not UTF-8: sqlite3 refuses
        pass
    bad_span = memory.get_finished_spans()[-1]
    with tracer.start_as_current_span("never stored"):
        pass
    fresh = [memory.get_finished_spans()[-1]] * (ROWS_PER_INSERT + 1)
    assert exporter.export([*fresh, bad_span]).name == "FAILURE"
    names = {s.name for t in reader.last_trace_ids(10 * count) for s in reader.trace(t)}
    assert "never stored" not in names and len(names) == count
    assert bad.get_span_context().is_valid
    exporter.shutdown()

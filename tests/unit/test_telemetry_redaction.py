"""Exception events reach exporters with their type, never a stack trace or an unsafe message."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh.config import TelemetrySettings
from mesh.contract.errors import UpstreamUnavailable
from mesh.telemetry import semconv as sc
from mesh.telemetry.redaction import RedactingProcessor
from mesh.telemetry.setup import setup_telemetry

CANARY = "canary-0b7e"


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "t"}))
    provider.add_span_processor(RedactingProcessor(SimpleSpanProcessor(memory)))
    return provider, memory


def test_the_sdks_own_record_exception_loses_stack_trace_and_message() -> None:
    provider, memory = _provider()
    with provider.get_tracer("t").start_as_current_span("rpc") as span:
        try:
            raise ValueError(f"cannot tokenize {CANARY}")
        except ValueError as exc:
            span.record_exception(exc)
        span.add_event("kept", {"k": CANARY})  # other events are not the processor's business
    [finished] = memory.get_finished_spans()
    exception, other = finished.events
    assert dict(exception.attributes or {}) == {
        "exception.type": "ValueError",
        "exception.escaped": "False",
    }
    assert dict(other.attributes or {}) == {"k": CANARY}


def test_mesh_spans_keep_the_caller_safe_message_of_a_mesh_error_only() -> None:
    provider, memory = _provider()
    tracer = provider.get_tracer("t")
    with pytest.raises(UpstreamUnavailable), sc.attempt_span("m", "p", tracer=tracer):
        raise UpstreamUnavailable("node n1 is down")
    with pytest.raises(KeyError), sc.attempt_span("m", "p", tracer=tracer):
        raise KeyError(CANARY)
    mesh_error, other = memory.get_finished_spans()
    [event] = mesh_error.events
    assert dict(event.attributes or {}) == {
        sc.EXCEPTION_TYPE: "UpstreamUnavailable",
        sc.EXCEPTION_MESSAGE: "node n1 is down",
        sc.MESH_ERROR_REASON: "UPSTREAM_UNAVAILABLE",
    }
    assert mesh_error.status.description == "UNAVAILABLE: node n1 is down"
    [event] = other.events
    assert dict(event.attributes or {}) == {sc.EXCEPTION_TYPE: "KeyError"}
    assert CANARY not in other.to_json()


class _Seen(SpanProcessor):
    """Keeps every finished span it is handed."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def test_spans_without_exception_events_are_passed_on_as_they_are() -> None:
    """No copy on the hot path: the wrapped processor gets the SDK's own object."""
    direct, wrapped = _Seen(), _Seen()
    provider = TracerProvider()
    provider.add_span_processor(direct)
    provider.add_span_processor(RedactingProcessor(wrapped))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("plain") as span:
        span.add_event("note", {"k": "v"})
    with tracer.start_as_current_span("failed") as span:
        span.record_exception(RuntimeError("x"))
    assert wrapped.spans[0] is direct.spans[0]
    assert wrapped.spans[1] is not direct.spans[1]
    assert wrapped.spans[1].name == "failed" and wrapped.spans[1].context == direct.spans[1].context


def test_setup_wraps_every_configured_exporter() -> None:
    telemetry = setup_telemetry(
        "svc",
        TelemetrySettings(exporters=["memory"], prometheus_listen=None),
        install_global=False,
    )
    try:
        with telemetry.tracer.start_as_current_span("rpc") as span:
            span.record_exception(RuntimeError(CANARY))
        assert telemetry.memory_exporter is not None
        [finished] = telemetry.memory_exporter.get_finished_spans()
        assert CANARY not in finished.to_json()
    finally:
        telemetry.shutdown()

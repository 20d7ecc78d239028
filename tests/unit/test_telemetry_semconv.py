"""The mesh's span helpers: names, kinds, attributes, the server-fault rule, content policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from mesh.contract.errors import Code, InvalidRequest, MeshError, UpstreamUnavailable
from mesh.telemetry import semconv as sc

SECRET = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_attempt_span_is_a_client_chat_span(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    with sc.attempt_span(
        "smollm2",
        "self-hosted",
        attempt=2,
        node="n1",
        server_address="10.0.0.7:50052",
        stream=True,
        tracer=tracer,
    ) as span:
        sc.record_usage(
            span,
            input_tokens=12,
            output_tokens=30,
            response_model="smollm2",
            finish_reasons=["stop"],
        )
        sc.record_first_chunk(span, 0.042)
    done = _only(exporter)
    assert done.name == "chat smollm2" and done.kind == SpanKind.CLIENT
    attrs = _attrs(done)
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "self-hosted"
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "smollm2"
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == 0.042
    assert attrs[sc.MESH_ROUTE_ATTEMPT] == 2
    assert attrs[sc.SERVER_ADDRESS] == "10.0.0.7" and attrs[sc.SERVER_PORT] == 50052
    assert done.status.status_code == StatusCode.UNSET


@pytest.mark.parametrize(
    ("error", "code", "is_error"),
    [
        (UpstreamUnavailable("node n1 is down"), "UNAVAILABLE", True),
        (MeshError("boom"), "INTERNAL", True),
        (InvalidRequest("bad temperature"), "INVALID_ARGUMENT", False),
        (MeshError("blocked", code=Code.PERMISSION_DENIED), "PERMISSION_DENIED", False),
        (asyncio.CancelledError(), "CANCELLED", False),
        (RuntimeError(f"leaks {SECRET}"), "UNKNOWN", True),
    ],
)
def test_only_server_faults_are_errors(
    tracer: Tracer, exporter: InMemorySpanExporter, error: BaseException, code: str, is_error: bool
) -> None:
    with pytest.raises(type(error)), sc.route_span("cheapest", tracer=tracer):
        raise error
    span = _only(exporter)
    assert _attrs(span)[sc.ERROR_TYPE] == code
    assert (span.status.status_code == StatusCode.ERROR) is is_error
    # Only a MeshError's (caller-safe) message is recorded; other messages may quote content.
    assert SECRET not in span.to_json()


def test_guard_chain_span_follows_the_guardrail_proposal(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with sc.guard_chain_span(
        "output", guards=2, policy_id="default", policy_version="7", tracer=tracer
    ) as span:
        end = sc.now_ns()
        sc.record_guard_event(
            span,
            "secrets",
            action="redact",
            categories=["aws_key", "aws_key", "jwt"],
            end_ns=end,
            duration_ns=1_500_000,
        )
        sc.record_guard_event(
            span,
            "pii",
            action="block",
            decision="allow",
            mode="monitor",
            categories=["EMAIL_ADDRESS"],
            end_ns=end,
            duration_ns=0,
        )
        sc.record_chain_verdict(span, action="redact", categories=["jwt", "aws_key"])
    done = _only(exporter)
    # No single guardian: the proposal's fallback name, `apply_guardrail {target}`.
    assert done.name == "apply_guardrail llm_output"
    attrs = _attrs(done)
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "apply_guardrail"
    assert attrs[sc.GEN_AI_SECURITY_TARGET_TYPE] == "llm_output"
    assert attrs[sc.MESH_GUARD_COUNT] == 2
    assert attrs[sc.GEN_AI_SECURITY_DECISION_TYPE] == "modify"
    assert attrs[sc.GEN_AI_SECURITY_FINDING_CATEGORIES] == ("aws_key", "jwt")
    assert attrs[sc.GEN_AI_SECURITY_POLICY_ID] == "default"
    assert attrs[sc.GEN_AI_SECURITY_POLICY_VERSION] == "7"
    assert done.status.status_code == StatusCode.UNSET
    secrets, pii = done.events
    assert secrets.name == pii.name == sc.GUARD_EVENT and secrets.timestamp == end
    # An enforced action follows from its decision; only a monitored guard's is recorded.
    assert dict(secrets.attributes or {}) == {
        sc.GEN_AI_GUARDIAN_NAME: "secrets",
        sc.GEN_AI_SECURITY_DECISION_TYPE: "modify",
        sc.MESH_GUARD_DURATION_MS: 1.5,
        sc.GEN_AI_SECURITY_FINDING_CATEGORIES: ("aws_key", "jwt"),
    }
    assert dict(pii.attributes or {})[sc.MESH_GUARD_ACTION] == "block"
    assert dict(pii.attributes or {})[sc.MESH_GUARD_MODE] == "monitor"
    assert dict(pii.attributes or {})[sc.GEN_AI_SECURITY_DECISION_TYPE] == "allow"


def test_outgoing_metadata_carries_the_span_and_keeps_the_callers(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with sc.attempt_span("m", "p", rpc_method="/pkg.Svc/Do", tracer=tracer) as span:
        metadata = sc.outgoing_metadata(span, (("x-request-id", "r1"),))
    ctx = _only(exporter).context
    assert metadata == (
        ("x-request-id", "r1"),
        ("traceparent", f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"),
    )
    assert _attrs(_only(exporter))[sc.RPC_SERVICE] == "pkg.Svc"


def test_rpc_outcome_on_an_attempt_span(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    import grpc

    assert dict(sc.GRPC_STATUS_CODES) == {code.name: code.value[0] for code in grpc.StatusCode}
    with sc.attempt_span("m", "p", rpc_method="/pkg.Svc/Do", tracer=tracer) as span:
        sc.mark_rpc_outcome(span, "UNAVAILABLE", "node down")
    attrs = _attrs(_only(exporter))
    assert attrs[sc.RPC_GRPC_STATUS_CODE] == 14 and attrs[sc.ERROR_TYPE] == "UNAVAILABLE"
    assert _only(exporter).status.status_code == StatusCode.ERROR


def test_outgoing_metadata_never_fails_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import propagate

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("propagator on fire")

    monkeypatch.setattr(propagate, "inject", broken)
    with sc.attempt_span("m", "p") as span:
        assert sc.outgoing_metadata(span, (("k", "v"),)) == (("k", "v"),)


def test_content_is_hashed_unless_capture_is_on(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    messages = [("system", "be brief"), ("user", f"my key is {SECRET}")]
    with sc.attempt_span("m", "openai", tracer=tracer) as span:
        sc.record_input(span, messages)
        sc.record_output(span, f"you said {SECRET}")
    with sc.attempt_span("m", "openai", tracer=tracer) as span:
        sc.record_input(span, [("user", "[REDACTED]")], capture_content=True)
        sc.record_output(span, "ok", finish_reason="stop", capture_content=True)
    hidden, shown = exporter.get_finished_spans()
    assert SECRET not in hidden.to_json()
    hidden_attrs = _attrs(hidden)
    assert hidden_attrs[sc.MESH_INPUT_MESSAGES] == 2
    assert hidden_attrs[sc.MESH_INPUT_SHA256] == sc.content_digest(f"be brief\nmy key is {SECRET}")
    assert sc.GEN_AI_INPUT_MESSAGES not in hidden_attrs
    shown_attrs = _attrs(shown)
    assert json.loads(str(shown_attrs[sc.GEN_AI_INPUT_MESSAGES]))[0]["parts"][0]["content"] == (
        "[REDACTED]"
    )
    assert json.loads(str(shown_attrs[sc.GEN_AI_OUTPUT_MESSAGES]))[0]["finish_reason"] == "stop"


class _BrokenTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("exporter on fire")


def test_telemetry_never_fails_the_request() -> None:
    ran = []
    with sc.attempt_span("m", "p", tracer=_BrokenTracer()) as span:  # type: ignore[arg-type]
        ran.append(True)
        sc.record_usage(span, input_tokens=1, output_tokens=2)
        sc.record_route(object(), node="n", model="m")  # type: ignore[arg-type]
    assert ran == [True]


def test_tag_request_and_engine_phases_attach_to_the_current_span(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("rpc") as rpc:
        sc.tag_request("req-9", tenant="acme")
        base = sc.now_ns()
        sc.record_engine_phases(
            queued_ns=base,
            scheduled_ns=base + 1_000,
            first_token_ns=base + 5_000,
            finished_ns=base + 9_000,
            tracer=tracer,
        )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert _attrs(spans["rpc"])[sc.MESH_REQUEST_ID] == "req-9"
    assert set(spans) == {"rpc", "engine queue", "engine prefill", "engine decode"}
    assert all(
        s.parent and s.parent.span_id == rpc.get_span_context().span_id
        for n, s in spans.items()
        if n != "rpc"
    )
    assert spans["engine decode"].end_time == base + 9_000

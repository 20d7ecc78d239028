"""Engine spans inside a vLLM node: queue, prefill and decode as vLLM itself timed them.

The session's vLLM engine (`vllm_node`) is served here by a second, traced servicer with
private telemetry, so the spans land in this test's memory exporter. The phases come from
vLLM's RequestStateStats (`RequestOutput.metrics`); a phase vLLM did not time is left out.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from mesh.config import TelemetrySettings
from mesh.contract.serving import create_server
from mesh.telemetry import semconv as sc
from mesh.telemetry.setup import Telemetry, setup_telemetry
from mesh.v1 import inference_pb2_grpc
from nodes.engines.vllm import engine_timings
from nodes.runtime import INFERENCE_SERVICE, NodeRuntime
from nodes.server import NodeServicer
from tests.fixtures.vllm import VLLM_NODE_CONFIG, vllm_backend
from tests.helpers import request, stream_request

pytestmark = [pytest.mark.model, pytest.mark.vllm]

GENERATE = f"/{INFERENCE_SERVICE}/Generate"
PHASES = ("engine queue", "engine prefill", "engine decode")


@dataclass
class TracedVllm:
    telemetry: Telemetry
    stub: inference_pb2_grpc.InferenceServiceStub


@pytest.fixture
async def traced(vllm_node: NodeRuntime) -> AsyncIterator[TracedVllm]:
    telemetry = setup_telemetry(
        "mesh-node-vllm",
        TelemetrySettings(exporters=["memory"], prometheus_listen=None),
        install_global=False,
    )
    servicer = NodeServicer(VLLM_NODE_CONFIG, vllm_backend(vllm_node), telemetry=telemetry)
    bound = create_server(
        "127.0.0.1:0",
        [(inference_pb2_grpc.add_InferenceServiceServicer_to_server, servicer, INFERENCE_SERVICE)],
        interceptors=telemetry.server_interceptors(),
    )
    await bound.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}")
    try:
        yield TracedVllm(telemetry, inference_pb2_grpc.InferenceServiceStub(channel))
    finally:
        await channel.close()
        await bound.server.stop(1.0)
        telemetry.shutdown()


def _finished(traced: TracedVllm) -> list[ReadableSpan]:
    assert traced.telemetry.memory_exporter is not None
    return list(traced.telemetry.memory_exporter.get_finished_spans())


def _check_phases_under(server: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    server_ctx = server.get_span_context()
    assert server_ctx is not None
    phases = sorted((s for s in spans if s.name in PHASES), key=lambda s: s.start_time or 0)
    assert [s.name for s in phases] == list(PHASES)
    for span in phases:
        assert span.parent is not None and span.parent.span_id == server_ctx.span_id
        assert span.context is not None and span.context.trace_id == server_ctx.trace_id
        assert span.attributes and span.attributes[sc.MESH_ENGINE_PHASE] == span.name.split()[1]
        assert span.start_time is not None and span.end_time is not None
        assert span.end_time > span.start_time
    queue, prefill, decode = phases
    # One timeline from vLLM's own stamps: each phase ends where the next begins.
    assert queue.end_time == prefill.start_time and prefill.end_time == decode.start_time
    # ... inside the RPC that asked for it (0.1 s of slack for converting the engine's clock).
    slack = 100_000_000
    assert server.start_time is not None and server.end_time is not None
    assert queue.start_time is not None and decode.end_time is not None
    assert server.start_time - slack <= queue.start_time
    assert decode.end_time <= server.end_time + slack
    return phases


async def test_unary_request_has_queue_prefill_decode_spans(traced: TracedVllm) -> None:
    reply = await traced.stub.Generate(
        request("Count from one to twenty.", max_tokens=16, request_id="vllm-spans-1"), timeout=120
    )
    assert reply.usage.output_tokens > 1  # so there is a decode phase
    spans = _finished(traced)
    [server] = [s for s in spans if s.name == GENERATE and s.kind == SpanKind.SERVER]
    _check_phases_under(server, spans)
    assert dict(server.attributes or {})[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == reply.usage.output_tokens


async def test_streamed_request_has_engine_spans_too(traced: TracedVllm) -> None:
    events = [
        e
        async for e in traced.stub.GenerateStream(
            stream_request("Name three colors.", max_tokens=12), timeout=120
        )
    ]
    assert events[-1].summary.usage.output_tokens > 1
    spans = _finished(traced)
    [server] = [
        s
        for s in spans
        if s.name == f"/{INFERENCE_SERVICE}/GenerateStream" and s.kind.name == "SERVER"
    ]
    _check_phases_under(server, spans)


def test_engine_timings_keep_only_what_vllm_stamped() -> None:
    from vllm.v1.metrics.stats import RequestStateStats

    assert engine_timings(None) is None
    # A request vLLM recorded nothing for (stats off): no phases, not zeros.
    assert engine_timings(RequestStateStats(arrival_time=time.time())) is None
    now = time.monotonic()
    stats = RequestStateStats(arrival_time=time.time() - 0.01)
    stats.queued_ts, stats.scheduled_ts, stats.first_token_ts = now - 0.009, now - 0.008, now
    timings = engine_timings(stats)
    assert timings is not None and timings.last_token_ns is None  # not stamped: left out
    assert timings.queued_ns is not None and timings.scheduled_ns is not None
    assert timings.first_token_ns is not None
    assert timings.queued_ns < timings.scheduled_ns < timings.first_token_ns <= time.time_ns()
    # Stamps from another clock (far outside the request's lifetime) are dropped, not shown.
    stats.queued_ts = now - 10_000.0
    timings = engine_timings(stats)
    assert timings is not None and timings.queued_ns is None

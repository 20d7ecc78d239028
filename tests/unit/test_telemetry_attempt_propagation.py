"""An upstream attempt is ONE client span: `attempt_span` + `outgoing_metadata` carry the trace
to a node over a channel with no client interceptor.

The node is real: a NodeServicer over the deterministic fake engine (the mesh's telemetry is
under test, not the model) in an in-process grpc.aio server with the server interceptors every
node runs (mesh.telemetry.grpc_instrumentation). Caller and node have separate tracer
providers, as two processes would, so the only link between them is the metadata on the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from mesh.config import NodeConfig
from mesh.contract.serving import BoundServer, bound_address, create_server
from mesh.telemetry import grpc_instrumentation
from mesh.telemetry import semconv as sc
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.engines.fake import FakeEngine
from nodes.server import NodeServicer

pytestmark = pytest.mark.timeout(30)

SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
GENERATE = f"/{SERVICE}/Generate"
GENERATE_STREAM = f"/{SERVICE}/GenerateStream"
MESSAGES = [types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content="hello there")]


@dataclass
class Node:
    address: str
    spans: InMemorySpanExporter
    bound: BoundServer


def _provider(*, sampled: bool = True) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    # The node's sampler is what setup_telemetry gives every mesh process.
    sampler = ParentBased(TraceIdRatioBased(1.0)) if sampled else ALWAYS_OFF
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    provider, spans = _provider()
    bound = create_server(
        "127.0.0.1:0",
        [
            (
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                NodeServicer(NodeConfig(id="n", engine="fake"), FakeEngine()),
                SERVICE,
            )
        ],
        interceptors=grpc_instrumentation.server_interceptors(provider),
    )
    await bound.server.start()
    yield Node(bound_address("127.0.0.1:0", bound.port), spans, bound)
    await bound.server.stop(0)
    provider.shutdown()


def _server_span(node: Node, method: str) -> ReadableSpan:
    [span] = [s for s in node.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.name == method
    return span


def _assert_child(server: ReadableSpan, attempt: ReadableSpan) -> None:
    assert server.parent is not None and server.parent.is_remote
    assert attempt.context is not None and server.context is not None
    assert server.context.trace_id == attempt.context.trace_id
    assert server.parent.span_id == attempt.context.span_id


async def test_node_server_span_is_a_child_of_the_unary_attempt_span(node: Node) -> None:
    provider, caller_spans = _provider()
    tracer = provider.get_tracer("router")
    async with grpc.aio.insecure_channel(node.address) as channel:  # no client interceptor
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with (
            tracer.start_as_current_span("route cheapest"),
            sc.attempt_span(
                "fake",
                "self-hosted",
                node="n",
                server_address=node.address,
                rpc_method=GENERATE,
                tracer=tracer,
            ) as span,
        ):
            metadata = sc.outgoing_metadata(span, (("x-mesh-tenant", "acme"),))
            reply = await stub.Generate(
                inference_pb2.GenerateRequest(messages=MESSAGES), metadata=metadata, timeout=10
            )
    assert reply.text
    assert metadata[0] == ("x-mesh-tenant", "acme"), "the caller's own metadata stays first"
    assert all(key == key.lower() for key, _ in metadata)

    [attempt] = [s for s in caller_spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert attempt.name == "chat fake", "one CLIENT span per attempt, the attempt span itself"
    attrs = dict(attempt.attributes or {})
    assert attrs[sc.RPC_SYSTEM] == "grpc"
    assert attrs[sc.RPC_SERVICE] == SERVICE and attrs[sc.RPC_METHOD] == "Generate"
    _assert_child(_server_span(node, GENERATE), attempt)


async def test_node_server_span_is_a_child_of_the_streaming_attempt_span(node: Node) -> None:
    provider, caller_spans = _provider()
    tracer = provider.get_tracer("router")
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with sc.attempt_span("fake", "self-hosted", stream=True, tracer=tracer) as span:
            call = stub.GenerateStream(
                inference_pb2.GenerateStreamRequest(messages=MESSAGES),
                metadata=sc.outgoing_metadata(span),
                timeout=10,
            )
            chunks = [chunk async for chunk in call]
    assert chunks and chunks[-1].HasField("summary")
    [attempt] = caller_spans.get_finished_spans()
    _assert_child(_server_span(node, GENERATE_STREAM), attempt)


async def test_an_unsampled_attempt_keeps_the_node_unsampled_too(node: Node) -> None:
    provider, caller_spans = _provider(sampled=False)
    tracer = provider.get_tracer("router")
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with sc.attempt_span("fake", "self-hosted", tracer=tracer) as span:
            metadata = sc.outgoing_metadata(span)
            await stub.Generate(
                inference_pb2.GenerateRequest(messages=MESSAGES), metadata=metadata, timeout=10
            )
    [(key, traceparent)] = metadata
    assert key == "traceparent"
    assert int(traceparent.rsplit("-", 1)[1], 16) & 0x01 == 0, "the sampled flag is off"
    assert caller_spans.get_finished_spans() == ()
    assert node.spans.get_finished_spans() == (), "the node follows the caller's decision"

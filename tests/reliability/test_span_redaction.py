"""No stack traces and no client-supplied strings in stored spans (issue 14, item 7).

A real router in front of a real node, both exporting into one SQLite span store, as `mesh up`
runs them. The node's engine is a fake (named as such, it tests the mesh's own telemetry)
that fails the way real tokenizers and engines do: with an exception whose message quotes the
prompt. The canary in that prompt must reach no span, event, status or stored byte, while
the failure is still visible in the trace (exception type, status, error.type).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan

from mesh.config import (
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RouterConfig,
    RoutingSettings,
    TelemetrySettings,
)
from mesh.router.app import RouterRuntime
from mesh.telemetry import semconv as sc
from mesh.telemetry.setup import Telemetry, setup_telemetry
from mesh.telemetry.span_store import SpanStore
from mesh.v1 import inference_pb2_grpc
from nodes.engines.base import GenerationEnd, GenerationInput, TextChunk
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import request, stream_request

pytestmark = pytest.mark.timeout(60)

CANARY = "canary-7f3e9b1d-do-not-store"


class PromptQuotingEngine(FakeEngine):
    """A fake engine that fails like a tokenizer given bad input: the message quotes it."""

    async def generate(
        self, request: GenerationInput
    ) -> AsyncGenerator[TextChunk | GenerationEnd, None]:
        prompt = request.messages[-1].content
        raise ValueError(f"cannot tokenize {prompt!r}")
        yield  # pragma: no cover - an async generator, as the interface expects


@dataclass
class TracedMesh:
    router: RouterRuntime
    node: NodeRuntime
    telemetry: list[Telemetry]
    store: Path

    def flush(self) -> list[ReadableSpan]:
        spans: list[ReadableSpan] = []
        for telemetry in self.telemetry:
            telemetry.force_flush()
            assert telemetry.memory_exporter is not None
            spans += telemetry.memory_exporter.get_finished_spans()
        return spans


@pytest.fixture
async def traced_mesh(tmp_path: Path) -> AsyncIterator[TracedMesh]:
    store = tmp_path / "traces.db"
    settings = TelemetrySettings(
        exporters=["memory", "span_store"], span_store_path=store, prometheus_listen=None
    )
    node_tel = setup_telemetry("node-n1", settings, install_global=False)
    router_tel = setup_telemetry("router", settings, install_global=False)
    node = NodeRuntime(
        NodeConfig(id="n1", engine="fake", model="fake-model"),
        PromptQuotingEngine(),
        telemetry=node_tel,
    )
    await node.start()
    ledger = tempfile.mkdtemp(prefix="mesh-ledger-")
    router = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            guards=GuardSettings(enabled=False),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(url=f"sqlite+aiosqlite:///{ledger}/ledger.db"),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
        ),
        telemetry=router_tel,
    )
    router.add_upstream("n1", node.address)
    await router.start()
    try:
        yield TracedMesh(router, node, [router_tel, node_tel], store)
    finally:
        await router.stop(0)
        await node.stop(0)
        router_tel.shutdown()
        node_tel.shutdown()


async def test_a_failure_quoting_the_prompt_leaves_no_trace_of_it(traced_mesh: TracedMesh) -> None:
    prompt = f"please summarise {CANARY}"
    async with grpc.aio.insecure_channel(traced_mesh.router.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.Generate(request(prompt, request_id="req-unary"), timeout=20)
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stub.GenerateStream(
                stream_request(prompt, request_id="req-stream"), timeout=20
            ):
                pass
    for err in (unary.value, streamed.value):
        assert err.code() != grpc.StatusCode.OK
        assert CANARY not in (err.details() or "")

    spans = traced_mesh.flush()
    exception_events = [e for s in spans for e in s.events if e.name == sc.EXCEPTION_EVENT]
    # The failure is still in the trace: exception events with their types, the node's server
    # spans marked as server faults.
    assert exception_events
    assert all(sc.EXCEPTION_TYPE in (e.attributes or {}) for e in exception_events)
    node_servers = [
        s
        for s in spans
        if s.resource.attributes["service.name"] == "node-n1" and s.kind.name == "SERVER"
    ]
    assert len(node_servers) == 2
    assert all(s.status.status_code.name == "ERROR" for s in node_servers)
    assert all((s.attributes or {}).get(sc.ERROR_TYPE) == "INTERNAL" for s in node_servers)
    for event in exception_events:
        attributes = dict(event.attributes or {})
        assert "exception.stacktrace" not in attributes, attributes
        assert sc.EXCEPTION_MESSAGE not in attributes or sc.MESH_ERROR_REASON in attributes

    # Nothing of the prompt anywhere: not in names, attributes, events or statuses...
    for span in spans:
        assert CANARY not in span.to_json(), span.name
    # ...nor in any byte of the store the SREs' `mesh trace` reads (database and WAL).
    for path in (traced_mesh.store, traced_mesh.store.with_name("traces.db-wal")):
        if path.exists():
            assert CANARY.encode() not in path.read_bytes(), path
    stored = SpanStore(traced_mesh.store)
    [trace_id] = stored.trace_ids_for_request("req-unary")
    assert any(s.service == "node-n1" for s in stored.trace(trace_id))

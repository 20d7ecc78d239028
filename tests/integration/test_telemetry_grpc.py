"""One request across two real grpc.aio servers yields one trace with the right parents.

Server A is a small relay (standing in for the router: a guard chain, route decision, fallback
over two upstream attempts) whose attempt spans carry the trace context themselves
(`outgoing_metadata`, no client interceptor: one CLIENT span per attempt, as the router makes
them); server B is an inference node over the
deterministic fake engine — the mesh's own telemetry is under test here, not the model. Each
server has its own tracer provider (as two processes would), so the only way B's spans join A's
trace is the `traceparent` header on the wire.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from mesh.config import NodeConfig, TelemetrySettings
from mesh.contract.errors import Code, MeshError, UpstreamUnavailable
from mesh.contract.serving import BoundServer, bound_address, create_server
from mesh.contract.status import unary_error_boundary
from mesh.telemetry import semconv as sc
from mesh.telemetry.cli import trace_command
from mesh.telemetry.setup import Telemetry, setup_telemetry
from mesh.telemetry.span_store import SpanStore
from mesh.telemetry.trace_view import render_trace
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.engines.fake import FakeEngine
from nodes.server import NodeServicer

pytestmark = pytest.mark.timeout(30)

SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"
GENERATE = f"/{SERVICE}/Generate"


class RelayServicer(inference_pb2_grpc.InferenceServiceServicer):
    """A router in miniature: input guard, route span, one attempt per upstream till one answers."""

    def __init__(self, telemetry: Telemetry, upstreams: list[str]) -> None:
        self.telemetry = telemetry
        self.upstreams = upstreams
        self.channels = [grpc.aio.insecure_channel(a) for a in upstreams]

    @unary_error_boundary
    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.GenerateResponse:
        tracer, metrics = self.telemetry.tracer, self.telemetry.metrics
        sc.tag_request(request.request_id)
        prompt = request.messages[-1].content
        with sc.guard_chain_span("input", guards=1, policy_version="v3", tracer=tracer) as guard:
            blocked = "forbidden" in prompt
            action = "block" if blocked else "allow"
            categories = ["banned_word"] if blocked else []
            sc.record_guard_event(
                guard,
                "ban-list",
                action=action,
                categories=categories,
                end_ns=sc.now_ns(),
                duration_ns=1000,
            )
            sc.record_chain_verdict(guard, action=action, categories=categories)
            metrics.count_guard_verdict(
                guard="ban-list", action="block" if blocked else "pass", stage="input"
            )
        if blocked:
            metrics.count_request(status="PERMISSION_DENIED", policy="test")
            raise MeshError(
                "blocked by policy", reason="GUARD_BLOCKED", code=Code.PERMISSION_DENIED
            )
        if "crash" in prompt:
            raise MeshError("relay fell over", reason="INTERNAL", code=Code.INTERNAL)
        with sc.route_span("test", request_id=request.request_id, tracer=tracer) as route:
            sc.record_route(
                route,
                node="n",
                model="fake-model",
                provider="self-hosted",
                candidates=len(self.channels),
                reason="cheapest healthy",
                estimated_cost_usd=0.00002,
                baseline_cost_usd=0.001,
            )
            for attempt, channel in enumerate(self.channels, start=1):
                with sc.attempt_span(
                    "fake-model",
                    "self-hosted",
                    attempt=attempt,
                    node="n",
                    server_address=self.upstreams[attempt - 1],
                    rpc_method=GENERATE,
                    tracer=tracer,
                ) as span:
                    sc.record_input(
                        span,
                        [("user", m.content) for m in request.messages],
                        capture_content=self.telemetry.capture_content,
                    )
                    try:
                        response: inference_pb2.GenerateResponse = await (
                            inference_pb2_grpc.InferenceServiceStub(channel).Generate(
                                request, metadata=sc.outgoing_metadata(span), timeout=5
                            )
                        )
                    except grpc.aio.AioRpcError as err:
                        sc.mark_rpc_outcome(span, err.code().name, err.details() or "")
                        continue
                    sc.record_usage(
                        span,
                        input_tokens=response.usage.input_tokens,
                        output_tokens=response.usage.output_tokens,
                        response_model=response.model,
                        finish_reasons=["stop"],
                    )
                    sc.record_output(
                        span, response.text, capture_content=self.telemetry.capture_content
                    )
                    metrics.record_tokens(
                        input_tokens=response.usage.input_tokens,
                        output_tokens=response.usage.output_tokens,
                        provider="self-hosted",
                        request_model="fake-model",
                        response_model=response.model,
                    )
                    metrics.count_request(
                        status="OK", model=response.model, node="n", policy="test"
                    )
                    sc.record_route_result(
                        route, attempts=attempt, actual_cost_usd=response.usage.cost_usd
                    )
                    return response
        raise UpstreamUnavailable("no upstream answered")


@dataclass
class Mesh:
    router: Telemetry
    node: Telemetry
    store: Path
    address: str
    servers: list[BoundServer]


def _settings(store: Path) -> TelemetrySettings:
    return TelemetrySettings(
        exporters=["memory", "span_store"], span_store_path=store, prometheus_listen="127.0.0.1:0"
    )


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    store = tmp_path / "traces.db"
    node_tel = setup_telemetry("node-n", _settings(store), install_global=False)
    router_tel = setup_telemetry("router", _settings(store), install_global=False)
    node = create_server(
        "127.0.0.1:0",
        [
            (
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                NodeServicer(NodeConfig(id="n", engine="fake"), FakeEngine()),
                SERVICE,
            )
        ],
        interceptors=node_tel.server_interceptors(),
    )
    await node.server.start()
    node_address = bound_address("127.0.0.1:0", node.port)
    # A closed port first: attempt 1 fails with UNAVAILABLE, attempt 2 falls back to the node.
    relay = RelayServicer(router_tel, ["127.0.0.1:1", node_address])
    router = create_server(
        "127.0.0.1:0",
        [(inference_pb2_grpc.add_InferenceServiceServicer_to_server, relay, SERVICE)],
        interceptors=router_tel.server_interceptors(),
    )
    await router.server.start()
    yield Mesh(
        router_tel, node_tel, store, bound_address("127.0.0.1:0", router.port), [router, node]
    )
    for channel in relay.channels:
        await channel.close()
    for bound in (router, node):
        await bound.server.stop(0)
    router_tel.shutdown()
    node_tel.shutdown()


async def _generate(address: str, prompt: str, request_id: str) -> inference_pb2.GenerateResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = inference_pb2.GenerateRequest(
            messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=prompt)],
            request_id=request_id,
        )
        response: inference_pb2.GenerateResponse = await stub.Generate(request, timeout=10)
        return response


def _spans(mesh: Mesh) -> list[ReadableSpan]:
    mesh.router.force_flush()
    mesh.node.force_flush()
    assert mesh.router.memory_exporter is not None and mesh.node.memory_exporter is not None
    return [
        *mesh.router.memory_exporter.get_finished_spans(),
        *mesh.node.memory_exporter.get_finished_spans(),
    ]


async def _settled_spans(mesh: Mesh) -> list[ReadableSpan]:
    """The spans once the router's server span has ended.

    The client sees the status as soon as the server sends it; the server span ends a moment
    later, when the handler's interceptor returns, so a test polls (bounded) instead of racing.
    """
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        spans = _spans(mesh)
        if any(s.name == GENERATE and s.kind == SpanKind.SERVER for s in spans):
            return spans
        if asyncio.get_running_loop().time() > deadline:
            return spans
        await asyncio.sleep(0.02)


def _one(spans: list[ReadableSpan], name: str, kind: SpanKind | None = None) -> ReadableSpan:
    found = [s for s in spans if s.name == name and (kind is None or s.kind == kind)]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def _id(span: ReadableSpan) -> int:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.span_id


def _scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def _counter(text: str, metric: str, *labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric) and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_one_trace_across_two_servers_with_fallback(mesh: Mesh) -> None:
    response = await _generate(mesh.address, f"my api key is {SECRET} please summarise", "req-1")
    assert response.text and response.usage.output_tokens > 0
    spans = await _settled_spans(mesh)

    assert len({s.context.trace_id for s in spans if s.context}) == 1, "one trace per request"
    server_a = next(
        s
        for s in spans
        if s.name == GENERATE
        and s.kind == SpanKind.SERVER
        and s.resource.attributes["service.name"] == "router"
    )
    server_b = next(
        s
        for s in spans
        if s.name == GENERATE
        and s.kind == SpanKind.SERVER
        and s.resource.attributes["service.name"] == "node-n"
    )
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    route = _one(spans, "route test")
    guard = _one(spans, "apply_guardrail llm_input")
    attempts = sorted(
        (s for s in spans if s.name == "chat fake-model"),
        key=lambda s: int(str((s.attributes or {}).get(sc.MESH_ROUTE_ATTEMPT, 0))),
    )

    # Parents: A server -> guard chain, route -> attempts -> (wire) -> B server.
    assert _parent(server_a) is None
    assert _parent(guard) == _id(server_a) and _parent(route) == _id(server_a)
    assert [_parent(a) for a in attempts] == [_id(route), _id(route)]
    # The attempt spans are the only CLIENT spans; only the second reached the node.
    assert sorted(map(_id, clients)) == sorted(map(_id, attempts))
    assert server_b.parent is not None and server_b.parent.is_remote
    assert _parent(server_b) == _id(attempts[1])
    # server A, guard chain, route, two attempts, server B (the interceptor added one per attempt)
    assert len(spans) == 6, [s.name for s in spans]

    # The failed first attempt is a server fault; the second carries real usage.
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[0].kind == SpanKind.CLIENT
    unavailable = grpc.StatusCode.UNAVAILABLE.value[0]
    assert dict(attempts[0].attributes or {})[sc.RPC_GRPC_STATUS_CODE] == unavailable
    assert dict(attempts[1].attributes or {})[sc.RPC_GRPC_STATUS_CODE] == 0
    assert attempts[1].status.status_code == StatusCode.UNSET
    attrs = dict(attempts[1].attributes or {})
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "self-hosted"
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == response.usage.input_tokens > 0
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == response.usage.output_tokens
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == response.model
    assert dict(route.attributes or {})[sc.MESH_ROUTE_ATTEMPTS] == 2
    assert dict(server_a.attributes or {})[sc.MESH_REQUEST_ID] == "req-1"
    assert dict(guard.attributes or {})[sc.GEN_AI_SECURITY_DECISION_TYPE] == "allow"
    [guard_event] = guard.events
    assert dict(guard_event.attributes or {})[sc.GEN_AI_GUARDIAN_NAME] == "ban-list"

    # Content stays out of telemetry by default: not in spans, not in the store file.
    dumped = json.dumps([json.loads(s.to_json()) for s in spans])
    assert SECRET not in dumped and "summarise" not in dumped
    assert sc.MESH_INPUT_SHA256 in attrs and sc.GEN_AI_INPUT_MESSAGES not in attrs
    assert SECRET.encode() not in mesh.store.read_bytes()

    # Both "processes" wrote the same trace to one SQLite store; mesh trace finds it by request.
    store = SpanStore(mesh.store)
    [trace_id] = store.trace_ids_for_request("req-1")
    stored = store.trace(trace_id)
    assert len(stored) == len(spans)
    assert {s.service for s in stored} == {"router", "node-n"}
    tree = render_trace(stored)
    assert tree.splitlines()[1].startswith(GENERATE + "  [router]  server")
    assert f"└─ {GENERATE}  [node-n]  server" in tree
    assert "chat fake-model" in tree and "attempt=2" in tree and "ERROR" in tree
    assert "· ban-list" in tree and "decision=allow" in tree

    result = CliRunner().invoke(trace_command, ["--request", "req-1", "--store", str(mesh.store)])
    assert result.exit_code == 0, result.output
    assert "route test" in result.output and "[node-n]" in result.output
    result = CliRunner().invoke(
        trace_command, [trace_id[:12], "--json", "--store", str(mesh.store)]
    )
    assert result.exit_code == 0, result.output
    [payload] = json.loads(result.output)
    by_id = {s["span_id"]: s for s in payload["spans"]}
    node_span = next(
        s for s in payload["spans"] if s["service"] == "node-n" and s["kind"] == "SERVER"
    )
    assert by_id[node_span["parent_id"]]["kind"] == "CLIENT"


async def test_guard_block_is_an_outcome_not_an_error(mesh: Mesh) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _generate(mesh.address, "say something forbidden", "req-blocked")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    spans = await _settled_spans(mesh)
    server = _one(spans, GENERATE, SpanKind.SERVER)
    guard = _one(spans, "apply_guardrail llm_input")
    assert _parent(guard) == _id(server)
    guard_attrs = dict(guard.attributes or {})
    assert guard_attrs[sc.GEN_AI_SECURITY_DECISION_TYPE] == "deny"
    assert guard_attrs[sc.GEN_AI_SECURITY_FINDING_CATEGORIES] == ("banned_word",)
    assert guard_attrs[sc.GEN_AI_SECURITY_POLICY_VERSION] == "v3"
    [event] = guard.events
    assert dict(event.attributes or {})[sc.GEN_AI_SECURITY_DECISION_TYPE] == "deny"
    assert not [s for s in spans if s.name.startswith("chat ")], "no upstream attempt"
    # abort_with_status bypasses the package's context wrapper; the recorder still sees the code.
    server_attrs = dict(server.attributes or {})
    assert server_attrs[sc.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert server_attrs[sc.ERROR_TYPE] == "PERMISSION_DENIED"
    assert server.status.status_code == StatusCode.UNSET


async def test_server_fault_marks_the_server_span(mesh: Mesh) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _generate(mesh.address, "please crash", "req-crash")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    server = _one(await _settled_spans(mesh), GENERATE, SpanKind.SERVER)
    assert server.status.status_code == StatusCode.ERROR
    assert dict(server.attributes or {})[sc.RPC_GRPC_STATUS_CODE] == 13


async def test_health_checks_and_periodic_probes_are_not_traced(mesh: Mesh) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mesh.telemetry.grpc_instrumentation import PROBE_METHODS
    from mesh.v1 import registry_pb2

    registry = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
    assert set(PROBE_METHODS) == {f"/{SERVICE}/ListModels", f"/{registry}/Heartbeat"}
    async with grpc.aio.insecure_channel(
        mesh.address, interceptors=mesh.router.client_interceptors()
    ) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        # A router polls ListModels on every node every few seconds: no trace each time.
        with pytest.raises(grpc.aio.AioRpcError):  # the relay does not implement it
            await inference_pb2_grpc.InferenceServiceStub(channel).ListModels(
                inference_pb2.ListModelsRequest(), timeout=5
            )
    assert _spans(mesh) == []
    await _generate(mesh.address, "hello", "req-traced")
    assert _spans(mesh), "a request is still traced"


async def test_prometheus_endpoint_counters_move(mesh: Mesh) -> None:
    assert mesh.router.metrics_address is not None
    before = await asyncio.to_thread(_scrape, mesh.router.metrics_address)
    await _generate(mesh.address, "hello there", "req-m1")
    await _generate(mesh.address, "hello again", "req-m2")
    after = await asyncio.to_thread(_scrape, mesh.router.metrics_address)
    ok = ('mesh_status="OK"',)
    assert _counter(after, "mesh_requests", *ok) - _counter(before, "mesh_requests", *ok) == 2
    assert "gen_ai_client_token_usage" in after
    assert _counter(after, "gen_ai_client_token_usage_count", 'gen_ai_token_type="output"') >= 2
    assert _counter(after, "mesh_guard_verdicts", 'mesh_guard_action="pass"') >= 2

"""A real node's own telemetry: its Prometheus endpoint, and access logs that lead to the trace.

A transformers-engine node (real SmolLM2) runs with private telemetry (its own providers, a
Prometheus endpoint on a free loopback port); the test makes real requests, scrapes /metrics
over HTTP and checks that the counters moved by exactly what the replies report.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from opentelemetry.trace import SpanKind

from mesh.config import NodeConfig, TelemetrySettings
from mesh.telemetry.logging import configure_logging
from mesh.telemetry.setup import Telemetry, setup_telemetry
from mesh.v1 import inference_pb2, inference_pb2_grpc
from nodes.runtime import NodeRuntime
from tests.helpers import request, stream_request

pytestmark = [pytest.mark.model, pytest.mark.timeout(180)]

NODE_ID = "metrics-node"
GENERATE = "/mesh.v1.InferenceService/Generate"


@dataclass
class TracedNode:
    runtime: NodeRuntime
    telemetry: Telemetry
    stub: inference_pb2_grpc.InferenceServiceStub


@pytest.fixture(scope="module")
async def node(smollm2_path: Path) -> AsyncIterator[TracedNode]:
    telemetry = setup_telemetry(
        f"mesh-node-{NODE_ID}",
        TelemetrySettings(exporters=["memory"], prometheus_listen="127.0.0.1:0"),
        install_global=False,
    )
    runtime = NodeRuntime(
        NodeConfig(
            id=NODE_ID,
            engine="transformers",
            model="smollm2-135m-instruct",
            input_price_per_mtok=0.02,
            output_price_per_mtok=0.04,
        ),
        telemetry=telemetry,
    )
    await runtime.start()
    channel = grpc.aio.insecure_channel(runtime.address)
    try:
        yield TracedNode(runtime, telemetry, inference_pb2_grpc.InferenceServiceStub(channel))
    finally:
        await channel.close()
        await runtime.stop(grace_s=1.0)
        telemetry.shutdown()


def _scrape(address: str) -> dict[str, float]:
    """/metrics as {"name{labels}": value}, read over loopback HTTP."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def _total(samples: dict[str, float], metric: str, *labels: str) -> float:
    """Sum of a metric's samples whose labels include all of `labels` (missing: 0)."""
    return sum(
        value
        for key, value in samples.items()
        if key.split("{", 1)[0] == metric and all(label in key for label in labels)
    )


async def _scrape_node(node: TracedNode) -> dict[str, float]:
    assert node.telemetry.metrics_address is not None
    return await asyncio.to_thread(_scrape, node.telemetry.metrics_address)


async def test_metrics_endpoint_counts_real_requests(node: TracedNode) -> None:
    before = await _scrape_node(node)
    unary = await node.stub.Generate(request(max_tokens=12), timeout=60)
    events = [e async for e in node.stub.GenerateStream(stream_request(max_tokens=12), timeout=60)]
    streamed = events[-1].summary
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node.stub.Generate(request("", max_tokens=4), timeout=60)  # empty prompt
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await _scrape_node(node)

    def moved(metric: str, *labels: str) -> float:
        return _total(after, metric, *labels) - _total(before, metric, *labels)

    node_label = f'mesh_node="{NODE_ID}"'
    role = 'mesh_role="node"'  # the node's view, apart from a router's in the same process
    assert moved("mesh_requests_total", 'mesh_status="OK"', node_label, role) == 2
    assert moved("mesh_requests_total", 'mesh_status="INVALID_ARGUMENT"', node_label) == 1
    assert moved("mesh_requests_total", 'mesh_model="smollm2-135m-instruct"') == 3

    # Token usage: one observation per token type per answered request, summing to the
    # engine's own counts that the replies carried.
    output = 'gen_ai_token_type="output"'
    input_ = 'gen_ai_token_type="input"'
    assert moved("gen_ai_client_token_usage_count", output, node_label, role) == 2
    assert moved("gen_ai_client_token_usage_sum", output) == (
        unary.usage.output_tokens + streamed.usage.output_tokens
    )
    assert moved("gen_ai_client_token_usage_sum", input_) == (
        unary.usage.input_tokens + streamed.usage.input_tokens
    )
    assert unary.usage.output_tokens > 0 and streamed.usage.output_tokens > 0

    # Time to first token once per answer; duration for all three, the failure by its code.
    assert moved("gen_ai_server_time_to_first_token_seconds_count", node_label) == 2
    assert moved("gen_ai_client_operation_duration_seconds_count") == 3
    assert moved("gen_ai_client_operation_duration_seconds_count", 'error_type="INVALID_ARGUMENT"')
    assert 'gen_ai_provider_name="self-hosted"' in " ".join(after)

    # Node load is read at scrape time: nothing in flight now.
    assert any(k.startswith("mesh_node_requests_running{") and node_label in k for k in after)
    assert _total(after, "mesh_node_requests_running", node_label) == 0
    assert _total(after, "mesh_node_requests_waiting", node_label) == 0


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(
        "INFO", json=True, service_name=f"mesh-node-{NODE_ID}", stream=stream
    )
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)


async def test_access_log_line_carries_the_request_trace(
    node: TracedNode, json_logs: io.StringIO
) -> None:
    assert node.telemetry.memory_exporter is not None
    node.telemetry.memory_exporter.clear()
    reply: inference_pb2.GenerateResponse = await node.stub.Generate(
        request(max_tokens=8, request_id="log-req-1"), timeout=60
    )
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    [line] = [x for x in lines if x.get("request_id") == "log-req-1"]
    [server] = [
        s
        for s in node.telemetry.memory_exporter.get_finished_spans()
        if s.name == GENERATE and s.kind == SpanKind.SERVER
    ]
    ctx = server.get_span_context()
    assert ctx is not None
    # Emitted inside the request: the node's RPC server span is the current span.
    assert line["trace_id"] == f"{ctx.trace_id:032x}"
    assert line["span_id"] == f"{ctx.span_id:016x}"
    assert line["service"] == f"mesh-node-{NODE_ID}" and line["level"] == "INFO"
    assert line["status"] == "OK" and line["node"] == NODE_ID
    assert line["output_tokens"] == reply.usage.output_tokens
    # transformers reports no engine phases, so the node invents none.
    assert not [
        s.name for s in node.telemetry.memory_exporter.get_finished_spans() if "engine" in s.name
    ]
    # Ids and counts only: neither the prompt nor the answer is logged.
    assert "France" not in json_logs.getvalue() and "capital" not in json_logs.getvalue()

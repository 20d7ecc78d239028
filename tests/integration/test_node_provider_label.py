"""Node metrics name the provider on the node's model card, not always "self-hosted".

A bridge node (real openai SDK over HTTP) answers from the scripted fault-injector server, and a
self-hosted node runs the deterministic fake engine: the labels are the mesh's own logic, so no
model is needed. Each node gets private telemetry with an in-memory metric reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc.aio
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mesh.config import BridgeConfig, NodeConfig, TelemetrySettings
from mesh.telemetry import semconv as sc
from mesh.telemetry.setup import Telemetry, setup_telemetry
from mesh.v1 import inference_pb2_grpc
from nodes.bridges.runtime import BridgeRuntime
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.fixtures.fault_injector import FaultInjector, Reply
from tests.helpers import request

KEY_ENV = "MESH_TEST_LABEL_KEY"
# Metrics recorded per generation with a gen_ai.provider.name attribute.
PROVIDER_METRICS = {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}


def _completion(text: str) -> dict[str, Any]:
    """A chat.completion body, as an OpenAI-compatible server answers a unary call."""
    return {
        "id": "chatcmpl-label",
        "object": "chat.completion",
        "created": 0,
        "model": "label-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


def _telemetry(service: str) -> tuple[Telemetry, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        service,
        TelemetrySettings(exporters=["memory"], prometheus_listen=None),
        install_global=False,
        metric_readers=[reader],
    )
    return telemetry, reader


def _providers(reader: InMemoryMetricReader) -> dict[str, set[str]]:
    """metric name -> the provider labels its data points carry."""
    found: dict[str, set[str]] = {}
    data = reader.get_metrics_data()
    assert data is not None

    def points() -> Iterator[tuple[str, Any]]:
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        yield metric.name, point

    for name, point in points():
        if name in PROVIDER_METRICS:
            found.setdefault(name, set()).add(str(point.attributes.get(sc.GEN_AI_PROVIDER_NAME)))
    return found


async def test_a_bridge_node_labels_its_metrics_with_its_provider(
    fault_injector: FaultInjector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-label-test-0000000000")
    config = BridgeConfig.model_validate(
        {
            "id": "label-bridge",
            "provider": "openai-compatible",
            "model": "label-model",
            "base_url": fault_injector.base_url + "/v1",
            "api_key_env": KEY_ENV,
            "context_window": 1024,
            "price": {"input": 0.1, "output": 0.2},
        }
    )
    telemetry, reader = _telemetry("label-bridge")
    runtime = BridgeRuntime(config, telemetry=telemetry)
    address = await runtime.start()
    try:
        fault_injector.play(Reply(200, body=_completion("Hello there")))
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            reply = await stub.Generate(request(), timeout=20)
        assert reply.text == "Hello there" and reply.route.provider == "openai-compatible"
        assert runtime.servicer.card_provider == "openai-compatible"
        assert _providers(reader) == {name: {"openai-compatible"} for name in PROVIDER_METRICS}
    finally:
        await runtime.stop(grace_s=0.5)
        telemetry.shutdown()


async def test_a_self_hosted_node_still_says_self_hosted() -> None:
    telemetry, reader = _telemetry("label-node")
    runtime = NodeRuntime(
        NodeConfig(id="label-node", engine="fake", model="fake-model"),
        FakeEngine(model_id="fake-model"),
        telemetry=telemetry,
    )
    address = await runtime.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await inference_pb2_grpc.InferenceServiceStub(channel).Generate(
                request(), timeout=20
            )
        assert reply.route.provider == "self-hosted"
        assert _providers(reader) == {name: {"self-hosted"} for name in PROVIDER_METRICS}
    finally:
        await runtime.stop(grace_s=0.5)
        telemetry.shutdown()

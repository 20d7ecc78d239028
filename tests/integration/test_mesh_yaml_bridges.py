"""Bridges declared in mesh.yaml: the embedded mesh starts them and its router routes to them.

The external API is the fault injector (tests/fixtures/fault_injector.py) scripted to answer
like an OpenAI-compatible server; everything else is real: the parsed config, the bridge node,
the router with its guards and ledger, gRPC on loopback.
"""

from __future__ import annotations

from typing import Any

import grpc.aio
import pytest

from mesh.config import MeshConfig, MissingApiKey, parse_config
from mesh.embedded import BridgeSetupError, EmbeddedMesh
from mesh.v1 import inference_pb2_grpc
from tests.fixtures.fault_injector import FaultInjector, Reply, Stream, openai_chunk
from tests.helpers import request, stream_request

KEY = "sk-mesh-yaml-bridge-test-8c2d4e6f"
KEY_ENV = "MESH_TEST_YAML_BRIDGE_KEY"


def _mesh_yaml(base_url: str, *, price: str = "price: {input: 0.5, output: 1.5}") -> MeshConfig:
    return parse_config(
        f"""
router:
  listen: 127.0.0.1:0
  health_interval_s: 0.2
nodes: []
bridges:
  - id: yaml-bridge
    provider: openai-compatible
    model: fault-model
    base_url: {base_url}/v1
    api_key_env: {KEY_ENV}
    context_window: 4096
    aliases: [via-yaml]
    {price}
    retry: {{max_attempts: 1}}
""",
        "mesh.yaml",
    )


def _completion(text: str) -> dict[str, Any]:
    """A chat.completion body as an OpenAI-compatible server returns it."""
    return {
        "id": "chatcmpl-yaml",
        "object": "chat.completion",
        "created": 0,
        "model": "fault-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def _final_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-yaml",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fault-model",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }


async def test_a_yaml_bridge_is_started_and_routed_to(
    fault_injector: FaultInjector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    mesh = EmbeddedMesh(_mesh_yaml(fault_injector.base_url))
    assert [b.config.id for b in mesh.bridges] == ["yaml-bridge"]
    address = await mesh.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            fault_injector.play(Reply(200, body=_completion("Paris.")))
            reply = await stub.Generate(request(model="via-yaml"), timeout=30)
            assert reply.text == "Paris."
            assert reply.route.node_id == "yaml-bridge"
            assert reply.route.provider == "openai-compatible"
            assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 3)
            assert reply.usage.cost_usd == pytest.approx((12 * 0.5 + 3 * 1.5) / 1e6)

            fault_injector.play(Stream((openai_chunk("Hel"), openai_chunk("lo"), _final_chunk())))
            text, routes = "", []
            async for event in stub.GenerateStream(stream_request(model="via-yaml"), timeout=30):
                if event.HasField("delta"):
                    text += event.delta.text
                else:
                    routes.append(event.summary.route)
            assert text == "Hello"
            assert [(r.node_id, r.provider) for r in routes] == [
                ("yaml-bridge", "openai-compatible")
            ]
    finally:
        await mesh.stop(grace_s=0.5)
    # The request reached the fake provider with the key from the environment.
    sent = fault_injector.received[0]
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "fault-model"
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert headers["authorization"] == f"Bearer {KEY}"


async def test_a_missing_key_fails_before_anything_starts(
    fault_injector: FaultInjector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    mesh = EmbeddedMesh(_mesh_yaml(fault_injector.base_url))
    with pytest.raises(MissingApiKey) as caught:
        await mesh.start()
    assert str(caught.value) == f"bridge yaml-bridge: environment variable {KEY_ENV} is not set"
    assert mesh.address == "" and mesh.bridges[0].address == ""
    assert fault_injector.received == [] and fault_injector.probes == 0


def test_a_bridge_model_without_a_price_names_the_bridge(fault_injector: FaultInjector) -> None:
    with pytest.raises(BridgeSetupError, match="bridge yaml-bridge: no price for model"):
        EmbeddedMesh(_mesh_yaml(fault_injector.base_url, price=""))

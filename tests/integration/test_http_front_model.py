"""The HTTP front on the real SmolLM2 node (transformers engine): the openai SDK's answer is the
model's, and a client that disconnects mid-stream aborts the generation on the engine itself,
as a cancelled gRPC call does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from guards.policy_store import PolicyStore
from mesh.config import (
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    HttpSettings,
    LedgerSettings,
    RouterConfig,
    RoutingSettings,
)
from mesh.router.app import RouterRuntime
from nodes.runtime import NodeRuntime
from tests.helpers import wait_until

pytestmark = [pytest.mark.model, pytest.mark.timeout(180)]


@pytest.fixture
async def client(hf_node: NodeRuntime, tmp_path: Path) -> AsyncIterator[openai.AsyncOpenAI]:
    """An openai client on a router (default guard policy) in front of the real node."""
    config = RouterConfig(
        listen="127.0.0.1:0",
        health_interval_s=0.2,
        http=HttpSettings(listen="127.0.0.1:0"),
        guards=GuardSettings(watch=False, audit_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"),
        cache=CacheSettings(enabled=False),
        ledger=LedgerSettings(enabled=False),
        routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
    )
    router = RouterRuntime(config, policy_store=PolicyStore.from_file())
    router.add_upstream(hf_node.config.id, hf_node.address)
    await router.start()
    assert router.http is not None
    try:
        yield openai.AsyncOpenAI(
            base_url=f"http://{router.http.address}/v1", api_key="unused", max_retries=0
        )
    finally:
        await router.stop(0.5)


async def node_idle(node: NodeRuntime) -> bool:
    def idle() -> bool:
        load = node.backend.load()
        return (load.running, load.waiting) == (0, 0) and node.servicer.admission.inflight == 0

    # The abort crosses the router hop and the engine stops at its next token; 1,500 tokens
    # take this engine far longer than the bound on these machines, so only an abort passes.
    return await wait_until(idle, 15)


async def test_unary_and_stream_answers_are_the_models(
    client: openai.AsyncOpenAI, hf_node: NodeRuntime
) -> None:
    question = [{"role": "user", "content": "What is the capital of France?"}]
    reply = await client.chat.completions.create(
        model="smollm2",
        messages=question,
        max_tokens=16,
        temperature=0,  # type: ignore[arg-type]
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.model == "smollm2-135m-instruct"
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 16
    route = reply.model_extra["mesh"]["route"]  # type: ignore[index]
    assert route["node_id"] == hf_node.config.id and route["provider"] == "self-hosted"
    stream = await client.chat.completions.create(
        model="auto",
        messages=question,  # type: ignore[arg-type]
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_disconnect_mid_stream_aborts_the_generation(
    client: openai.AsyncOpenAI, hf_node: NodeRuntime
) -> None:
    stream = await client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Tell a long story about the sea."}],
        max_tokens=1500,
        temperature=0,
        stream=True,
    )
    received = 0
    async for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 2:
            break
    assert hf_node.backend.load().running == 1  # generating when the client leaves
    await stream.close()
    assert await node_idle(hf_node)

"""A frozen node (SIGSTOP) must not hold calls until their deadline: the router gives up the
calls still waiting on it once it misses its health probes, and the next candidate answers.

The cheap node runs FakeEngine (a deterministic test engine) in its own process with answers
that start after 3 s, so calls are provably waiting on it when it is frozen; the fallback node
is dearer and instant. Without the probe-driven give-up each call waits its whole 30 s deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc.aio
import pytest

from mesh.config import (
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RouterConfig,
    RoutingSettings,
)
from mesh.router.app import RouterRuntime
from mesh.v1 import inference_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import request, stream_request, wait_until
from tests.process import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def slow_node() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.slow_node", "cheap", str(port), "3"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"ready")
        yield proc, f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(10)


@pytest.fixture
async def router(
    slow_node: tuple[subprocess.Popen[bytes], str],
) -> AsyncIterator[tuple[RouterRuntime, grpc.aio.Channel, FakeEngine]]:
    engine = FakeEngine(model_id="fake-model")
    dear = NodeRuntime(
        NodeConfig(
            id="dear",
            engine="fake",
            model="fake-model",
            input_price_per_mtok=5,
            output_price_per_mtok=5,
        ),
        engine,
    )
    await dear.start()
    runtime = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            health_interval_s=0.3,
            guards=GuardSettings(enabled=False),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(enabled=False),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
        )
    )
    runtime.add_upstream("cheap", slow_node[1])
    runtime.add_upstream("dear", dear.address)
    await runtime.start()
    try:
        async with grpc.aio.insecure_channel(runtime.address) as channel:
            yield runtime, channel, engine
    finally:
        await runtime.stop(0)
        await dear.stop(0)


async def test_calls_waiting_on_a_frozen_node_fall_back_to_the_next_one(
    slow_node: tuple[subprocess.Popen[bytes], str],
    router: tuple[RouterRuntime, grpc.aio.Channel, FakeEngine],
) -> None:
    runtime, channel, dear = router
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    unary = [asyncio.ensure_future(stub.Generate(request(f"q{i}"), timeout=30)) for i in range(4)]
    streams = [
        asyncio.ensure_future(_collect(stub.GenerateStream(stream_request(f"s{i}"), timeout=30)))
        for i in range(2)
    ]
    await asyncio.sleep(0.5)  # every call is now waiting on the cheap node's 3 s delay
    assert dear.completed == 0
    slow_node[0].send_signal(signal.SIGSTOP)
    replies = await asyncio.gather(*unary)
    summaries = await asyncio.gather(*streams)
    for reply in replies:
        assert reply.route.node_id == "dear" and reply.route.attempts == 2
        assert "stopped answering its health probes" in reply.route.candidates[0].rejected_reason
    assert all(s.route.node_id == "dear" for s in summaries)
    assert dear.completed == 6
    entry = runtime.catalog.get("cheap")
    assert entry is not None and not entry.healthy  # and it stays out until it answers again
    slow_node[0].send_signal(signal.SIGCONT)
    assert await wait_until(lambda: bool(runtime.catalog.get("cheap").healthy), 10)  # type: ignore[union-attr]


async def _collect(call: object) -> object:
    summary = None
    async for event in call:  # type: ignore[attr-defined]
        if event.HasField("summary"):
            summary = event.summary
    return summary

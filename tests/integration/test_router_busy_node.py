"""A busy node is not a frozen one: while a call to a node gets its events, a health probe that
the node answers too late must not take the node out of the routing table.

CI once failed this way (tests/reliability/test_abandoned_streams.py, 32 callers on two cores):
the nodes' event loop lagged past the 1 s probe timeout while it streamed, both nodes were marked
down, and the router refused a request UNAVAILABLE "no candidate can serve this request".
Here the node is a real NodeRuntime on FakeEngine (a deterministic test engine, named as such)
whose ListModels is made slower than the probe timeout on demand; the frozen-node path (no call
answered, probes late) is tests/integration/test_router_frozen_node.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
from mesh.v1 import inference_pb2, inference_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import request, stream_request, wait_until

PROBE_LATE_BY_S = 1.5  # past the router's 1 s probe timeout


@dataclass
class SlowProbes:
    """Whether the node's ListModels answers late, and how many probes it was asked."""

    late: bool = False
    late_next: int = 0  # this many probes answer late, then they are on time again
    asked: int = 0


@contextlib.asynccontextmanager
async def _mesh(
    health_timeout_s: float = 1.0,
) -> AsyncIterator[tuple[RouterRuntime, grpc.aio.Channel, SlowProbes]]:
    engine = FakeEngine(model_id="fake-model")
    engine.script.delay_between_s = 0.05
    engine.script.words_per_answer = 80  # a stream of ~4 s
    node = NodeRuntime(NodeConfig(id="busy", engine="fake", model="fake-model"), engine)
    probes = SlowProbes()
    list_models = node.servicer.ListModels

    async def slow_list_models(
        req: inference_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ListModelsResponse:
        probes.asked += 1
        if probes.late or probes.late_next > 0:
            probes.late_next -= 1
            await asyncio.sleep(PROBE_LATE_BY_S)
        return await list_models(req, context)

    node.servicer.ListModels = slow_list_models  # type: ignore[method-assign]
    await node.start()
    runtime = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            health_interval_s=0.2,
            health_timeout_s=health_timeout_s,
            guards=GuardSettings(enabled=False),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(enabled=False),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
        )
    )
    runtime.add_upstream("busy", node.address)
    await runtime.start()
    try:
        async with grpc.aio.insecure_channel(runtime.address) as channel:
            yield runtime, channel, probes
    finally:
        await runtime.stop(0)
        await node.stop(0)


@pytest.fixture
async def busy_mesh() -> AsyncIterator[tuple[RouterRuntime, grpc.aio.Channel, SlowProbes]]:
    async with _mesh() as mesh:
        yield mesh


def _healthy(runtime: RouterRuntime) -> bool:
    entry = runtime.catalog.get("busy")
    return entry is not None and entry.healthy


async def test_a_node_streaming_while_its_probes_are_late_stays_in_the_table(
    busy_mesh: tuple[RouterRuntime, grpc.aio.Channel, SlowProbes],
) -> None:
    runtime, channel, probes = busy_mesh
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    assert await wait_until(lambda: _healthy(runtime), 10)

    stream = stub.GenerateStream(stream_request("a long answer", max_tokens=80), timeout=30)
    events = aiter(stream)
    await anext(events)  # the node is streaming
    probes.late = True
    asked_before = probes.asked
    seen_unhealthy = False
    for _ in range(12):  # ~2.4 s of a stream that lasts ~4 s
        await asyncio.sleep(0.2)
        seen_unhealthy |= not _healthy(runtime)
    late_probes = probes.asked - asked_before
    # A second caller is served meanwhile: the router did not take the node out.
    reply = await stub.Generate(request("meanwhile", max_tokens=4), timeout=30)
    chunks = [event async for event in events]

    assert late_probes >= 2, "the router must have probed the node while it streamed"
    assert not seen_unhealthy, "a node answering a stream was marked down by late probes"
    assert reply.route.node_id == "busy"
    assert chunks and chunks[-1].HasField("summary")

    # With no call answered, the same late probes do take it out (the control):
    assert await wait_until(lambda: not _healthy(runtime), 10)
    probes.late = False
    assert await wait_until(lambda: _healthy(runtime), 10)


async def test_one_late_probe_with_no_call_in_flight_leaves_the_node_in_the_table(
    busy_mesh: tuple[RouterRuntime, grpc.aio.Channel, SlowProbes],
) -> None:
    """A host that stalls past the probe timeout once (CI: 1.8 s, both nodes at once) is no
    frozen node: only the second late probe in a row takes a node out (the control above)."""
    runtime, channel, probes = busy_mesh
    assert await wait_until(lambda: _healthy(runtime), 10)
    asked = probes.asked
    probes.late_next = 1
    seen_unhealthy = False
    while probes.asked < asked + 3:  # the late probe and two on time after it
        await asyncio.sleep(0.05)
        seen_unhealthy |= not _healthy(runtime)
    assert not seen_unhealthy, "one late probe took the node out of the table"
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    reply = await stub.Generate(request("still here?", max_tokens=4), timeout=30)
    assert reply.route.node_id == "busy"


async def test_a_probe_waits_as_long_as_health_timeout_s_says() -> None:
    """A node farther away than the default 1 s allows (answers 1.5 s late) stays in the table
    when the operator sets `health_timeout_s` above that; by default it is taken out (above)."""
    async with _mesh(health_timeout_s=PROBE_LATE_BY_S + 2.0) as (runtime, channel, probes):
        assert await wait_until(lambda: _healthy(runtime), 10)
        probes.late = True
        asked = probes.asked
        assert await wait_until(lambda: probes.asked >= asked + 2, 15)
        assert _healthy(runtime), "a probe answered within health_timeout_s marked the node down"
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await stub.Generate(request("still here?", max_tokens=4), timeout=30)
        assert reply.route.node_id == "busy"

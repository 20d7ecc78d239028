"""Soak: 32 concurrent streams through a real router for MESH_SOAK_S seconds (60 in `make test`,
600 in `make soak`), every stream's text exactly what the engine produced, and the router's
resident memory flat after warm-up.

The router runs as `mesh router` in its own process (so its RSS is its own) with the shipped
guard policy, the exact cache (bounded), the SQLite ledger, the audit log and the span store, as
an operator runs it. It fronts two nodes in the test process on RecordingFakeEngine (a
deterministic test engine, named as such: what is under test is the router's streaming path)
over real gRPC on loopback. Each stream's prompt is unique and its answer a 40-word rotation, so
a lost, repeated or reordered chunk changes the text. Nothing asserts a time: the figures (p50,
p99, RSS) are printed in the scenario table.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import psutil
import pytest

from mesh.config import NodeConfig
from mesh.v1 import inference_pb2_grpc
from nodes.runtime import NodeRuntime
from tests.fixtures.recording_engine import RecordingFakeEngine
from tests.fixtures.router_process import started_router
from tests.reliability.load import ANSWER_WORDS, SOAK_S, Load, recorded
from tests.reliability.scenarios import ScenarioTable, percentile

STREAMS = 32
WARM_UP_SHARE = 0.25  # the first quarter of the soak fills caches, pools and allocator arenas
RSS_GROWTH_LIMIT_MB = 5.0
SAMPLE_EVERY_S = 1.0

pytestmark = pytest.mark.timeout(SOAK_S + 240)


@pytest.fixture
async def nodes() -> AsyncIterator[list[NodeRuntime]]:
    nodes = []
    for node_id in ("n1", "n2"):
        engine = RecordingFakeEngine()
        engine.script.words_per_answer = ANSWER_WORDS
        config = NodeConfig(id=node_id, engine="fake", model="fake-model", max_inflight=64)
        nodes.append(NodeRuntime(config, engine))
    for node in nodes:
        await node.start()
    try:
        yield nodes
    finally:
        await asyncio.gather(*(node.stop(0) for node in nodes))


def _median_mb(samples: list[tuple[float, int]], start: float, end: float) -> float:
    window = [rss for at, rss in samples if start <= at <= end]
    assert window, f"no RSS sample between {start:.0f} s and {end:.0f} s"
    return statistics.median(window) / 2**20


async def test_soak_streams_arrive_exactly_and_the_router_memory_stays_flat(
    tmp_path: Path, nodes: list[NodeRuntime], scenarios: ScenarioTable
) -> None:
    scenario = scenarios(f"soak: {STREAMS} streams, {SOAK_S:.0f} s")
    router = {
        "upstreams": [{"id": n.config.id, "address": n.address} for n in nodes],
        "guards": {"watch": False},  # the shipped default policy
        "cache": {"semantic": False, "max_entries": 256},
        "routing": {"estimator": {"embeddings": False}},
        "registry": {"mode": "off"},
    }
    process, address = await asyncio.to_thread(started_router, tmp_path, router)
    router_process = psutil.Process(process.pid)
    samples: list[tuple[float, int]] = []
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            engines = [n.backend for n in nodes]
            assert all(isinstance(e, RecordingFakeEngine) for e in engines)
            load = Load(stub, recorded(engines), scenario, streams=STREAMS)  # type: ignore[arg-type]
            began = time.monotonic()

            async def sample() -> None:
                while True:
                    samples.append((time.monotonic() - began, router_process.memory_info().rss))
                    await asyncio.sleep(SAMPLE_EVERY_S)

            sampler = asyncio.create_task(sample())
            try:
                await load.run_for(SOAK_S)
            finally:
                sampler.cancel()
    finally:
        await asyncio.to_thread(process.stop)

    warm = SOAK_S * WARM_UP_SHARE
    after_warm_up = _median_mb(samples, warm - 5, warm)
    at_end = _median_mb(samples, SOAK_S - 5, SOAK_S)
    growth = at_end - after_warm_up
    totals = scenario.latencies_s
    scenario.figure(
        f"{load.completed} streams of {ANSWER_WORDS} chunks exact; stream p50 "
        f"{percentile(totals, 0.5) * 1000:.0f} ms, p99 {percentile(totals, 0.99) * 1000:.0f} ms; "
        f"first chunk p99 {percentile(load.first_s, 0.99) * 1000:.0f} ms"
    )
    scenario.figure(
        f"router RSS {after_warm_up:.1f} MB after {warm:.0f} s warm-up, {at_end:.1f} MB at "
        f"{SOAK_S:.0f} s: growth {growth:+.1f} MB (limit {RSS_GROWTH_LIMIT_MB:.0f} MB)"
    )
    assert not load.problems, load.problems[:10]
    assert load.completed > STREAMS, "the soak must have run whole rounds of streams"
    assert growth <= RSS_GROWTH_LIMIT_MB, scenario.figures[-1]

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
from pathlib import Path

import grpc.aio
import pytest

from mesh.v1 import inference_pb2_grpc
from nodes.runtime import NodeRuntime
from tests.fixtures.recording_engine import RecordingFakeEngine
from tests.fixtures.router_process import started_router
from tests.reliability.load import ANSWER_WORDS, SOAK_S, Load, recorded, soak_router
from tests.reliability.memory import RSS_GROWTH_LIMIT_MB, WARM_UP_SHARE, sampling
from tests.reliability.scenarios import ScenarioTable, percentile

STREAMS = 32

pytestmark = pytest.mark.timeout(SOAK_S + 240)


async def test_soak_streams_arrive_exactly_and_the_router_memory_stays_flat(
    tmp_path: Path, recording_nodes: list[NodeRuntime], scenarios: ScenarioTable
) -> None:
    scenario = scenarios(f"soak: {STREAMS} streams, {SOAK_S:.0f} s")
    router = soak_router(recording_nodes)
    process, address = await asyncio.to_thread(started_router, tmp_path, router)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            engines = [n.backend for n in recording_nodes]
            assert all(isinstance(e, RecordingFakeEngine) for e in engines)
            load = Load(stub, recorded(engines), scenario, streams=STREAMS)  # type: ignore[arg-type]
            async with sampling(process.pid) as samples:
                await load.run_for(SOAK_S)
    finally:
        await asyncio.to_thread(process.stop)

    warm = SOAK_S * WARM_UP_SHARE
    after_warm_up, at_end, growth = samples.growth(SOAK_S)
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

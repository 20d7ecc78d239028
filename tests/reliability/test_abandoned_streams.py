"""Clients that walk away: 32 callers each open a stream through a real router, read its first
text chunk and cancel, for MESH_SOAK_S seconds (60 in `make test`). The router must give up the
node's generation every time and keep its memory flat.

Before mesh/router/upstream_calls.py the router's own cancellation cancelled its pending upstream
read, which grpc.aio never frees (grpc/grpc#43360): ~0.9 KB per abandoned stream, 14-17 MB
over two minutes in `python -m benchmarks.soak`. The router runs as `mesh router` in its own
process (its RSS is its own), with the shipped guard policy, over two nodes on
RecordingFakeEngine (a deterministic test engine, named as such) on loopback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc.aio
import pytest

from mesh.v1 import inference_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.fixtures.router_process import started_router
from tests.reliability.load import (
    SOAK_S,
    abandoning_callers,
    check,
    prompt,
    recorded,
    settled_inflight,
    soak_router,
    stream_once,
    stream_request,
)
from tests.reliability.memory import RSS_GROWTH_LIMIT_MB, WARM_UP_SHARE, sampling
from tests.reliability.scenarios import ScenarioTable

CALLERS = 32

pytestmark = pytest.mark.timeout(SOAK_S + 240)


async def _abandon_after_first_chunk(
    stub: inference_pb2_grpc.InferenceServiceStub, text: str
) -> bool:
    """Whether a text chunk came before the caller cancelled."""
    call = stub.GenerateStream(stream_request(text), timeout=30.0)
    try:
        async for event in call:
            if event.HasField("delta") and event.delta.text:
                return True
        return False
    finally:
        call.cancel()


async def test_streams_abandoned_after_their_first_chunk_leave_nothing_behind(
    tmp_path: Path, recording_nodes: list[NodeRuntime], scenarios: ScenarioTable
) -> None:
    scenario = scenarios(f"abandoned streams: {CALLERS} callers, {SOAK_S:.0f} s")
    router = soak_router(recording_nodes)
    engines = [n.backend for n in recording_nodes]
    assert all(isinstance(e, FakeEngine) for e in engines)
    process, address = await asyncio.to_thread(started_router, tmp_path, router)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)

            async with sampling(process.pid) as samples:
                abandoned = await abandoning_callers(
                    CALLERS, SOAK_S, scenario, lambda text: _abandon_after_first_chunk(stub, text)
                )
            # The router still answers a whole stream exactly after all that.
            text = prompt(CALLERS, 0)
            whole = await stream_once(stub, text, timeout_s=30.0)
            problem = check(whole, await recorded(engines)(text))  # type: ignore[arg-type]
            still_running = await settled_inflight(recording_nodes)
    finally:
        await asyncio.to_thread(process.stop)

    warm = SOAK_S * WARM_UP_SHARE
    after_warm_up, at_end, growth = samples.growth(SOAK_S)
    aborted = sum(e.aborted_total for e in engines)  # type: ignore[attr-defined]
    scenario.figure(
        f"{abandoned} streams abandoned after their first chunk, {aborted} generations aborted "
        f"on the nodes; router RSS {after_warm_up:.1f} MB after {warm:.0f} s warm-up, "
        f"{at_end:.1f} MB at {SOAK_S:.0f} s: growth {growth:+.1f} MB "
        f"(limit {RSS_GROWTH_LIMIT_MB:.0f} MB)"
    )
    assert problem is None, problem
    assert abandoned > 10 * CALLERS, "the soak must have run whole rounds of streams"
    # The nodes gave up what the router cancelled (FakeEngine answers fast: many generations
    # end before the cancel reaches them) and nothing is left running on them.
    assert aborted > 0, scenario.figures[-1]
    assert still_running == [0, 0], still_running
    assert growth <= RSS_GROWTH_LIMIT_MB, scenario.figures[-1]

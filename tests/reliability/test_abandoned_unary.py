"""Clients that walk away from unary calls: 32 callers each send Generate through a real router
and cancel it while the node is still thinking, for half of MESH_SOAK_S (30 s in `make test`,
which already tells the leak apart: +8.2 MB before the fix, +1.9 after). The
router must give up the node's generation every time and keep its memory flat.

grpc.aio's own `UnaryUnaryCall.cancel()` - and cancelling the task that awaits a call, which is
what a router handler cancelled by its client does - leaks the call's native memory
(mesh/router/upstream_calls.py has the figures); the router cancels its upstream calls natively.
The router runs as `mesh router` in its own process (its RSS is its own), with the shipped guard
policy, over two nodes on RecordingFakeEngine (a deterministic test engine, named as such) that
wait before answering, on loopback. The test's own client abandons its calls the same way, so
that its process stays small over ~100,000 calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc.aio
import pytest

from mesh.router import upstream_calls
from mesh.v1 import inference_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.fixtures.router_process import started_router
from tests.reliability.load import (
    SOAK_S,
    abandoning_callers,
    check,
    generate_once,
    generate_request,
    prompt,
    recorded,
    settled_inflight,
    soak_router,
)
from tests.reliability.memory import RSS_GROWTH_LIMIT_MB, WARM_UP_SHARE, sampling
from tests.reliability.scenarios import ScenarioTable

CALLERS = 16  # the router's pace at c32 is below one call per 60 ms each: calls would queue
SOAK_THIS_S = SOAK_S / 2
NODE_THINKS_S = 0.5  # before the first token: the call is upstream when the client gives up
CLIENT_WAITS_S = 0.060

pytestmark = pytest.mark.timeout(SOAK_THIS_S + 240)


async def _abandon_mid_call(stub: inference_pb2_grpc.InferenceServiceStub, text: str) -> bool:
    """Whether the call was still running when the caller cancelled it."""
    call = stub.Generate(generate_request(text), timeout=30.0)
    waiter = asyncio.ensure_future(upstream_calls.reply(call))
    await asyncio.sleep(CLIENT_WAITS_S)
    running = not waiter.done()
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        await waiter
    return running


async def test_unary_calls_abandoned_mid_flight_leave_nothing_behind(
    tmp_path: Path, recording_nodes: list[NodeRuntime], scenarios: ScenarioTable
) -> None:
    scenario = scenarios(f"abandoned unary calls: {CALLERS} callers, {SOAK_THIS_S:.0f} s")
    engines = [n.backend for n in recording_nodes]
    assert all(isinstance(e, FakeEngine) for e in engines)
    for engine in engines:
        engine.script.delay_before_first_s = NODE_THINKS_S  # type: ignore[attr-defined]
    process, address = await asyncio.to_thread(
        started_router, tmp_path, soak_router(recording_nodes)
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)

            async with sampling(process.pid) as samples:
                abandoned = await abandoning_callers(
                    CALLERS, SOAK_THIS_S, scenario, lambda text: _abandon_mid_call(stub, text)
                )
            # The router still answers exactly after all that.
            for engine in engines:
                engine.script.delay_before_first_s = 0.0  # type: ignore[attr-defined]
            text = prompt(CALLERS, 0)
            whole = await generate_once(stub, text, timeout_s=30.0)
            problem = check(whole, await recorded(engines)(text))  # type: ignore[arg-type]
            still_running = await settled_inflight(recording_nodes)
    finally:
        await asyncio.to_thread(process.stop)

    warm = SOAK_THIS_S * WARM_UP_SHARE
    after_warm_up, at_end, growth = samples.growth(SOAK_THIS_S)
    aborted = sum(e.aborted_total for e in engines)  # type: ignore[attr-defined]
    started = sum(len(e.produced) for e in engines)  # type: ignore[attr-defined]
    completed = sum(e.completed for e in engines)  # type: ignore[attr-defined]
    scenario.figure(
        f"{abandoned} unary calls abandoned mid-flight; on the nodes {started} generations "
        f"started, {aborted} aborted, {completed} completed; router RSS {after_warm_up:.1f} MB "
        f"after {warm:.0f} s warm-up, {at_end:.1f} MB at {SOAK_THIS_S:.0f} s: "
        f"growth {growth:+.1f} MB (limit {RSS_GROWTH_LIMIT_MB:.0f} MB)"
    )
    assert problem is None, problem
    assert abandoned > 10 * CALLERS, "the soak must have run whole rounds of calls"
    assert aborted > abandoned // 2, scenario.figures[-1]  # the router gave the node's work up
    assert still_running == [0, 0], still_running
    assert growth <= RSS_GROWTH_LIMIT_MB, scenario.figures[-1]

"""Faults: a node killed (SIGKILL) or frozen (SIGSTOP) while unary calls and streams run on it.

The cheap node is FakeEngine (a deterministic test engine, named as such) in its own process,
answering 40 words at 50 ms each, so every call is mid-answer when the signal lands; a dearer
in-process node with the same script is the fallback. A real router with the shipped guard
policy fronts both on loopback. What must hold:

- every unary call answers, with exactly the engine's text (it falls back before its commit
  point: a unary answer is sent whole);
- a stream either completes with exactly the engine's text or, when it was already committed to
  the lost node, ends UNAVAILABLE: never wrong text, never a hang to its deadline;
- every call started after the signal answers;
- the lost node is marked down, and a frozen one comes back after SIGCONT.

(tests/integration/test_router_frozen_node.py covers calls frozen before their first token.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
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
from tests.fixtures.slow_node import start_slow_node
from tests.helpers import wait_until
from tests.process import ServerProcess
from tests.reliability.load import ANSWER_WORDS, Load, deterministic
from tests.reliability.scenarios import Scenario, ScenarioTable

pytestmark = pytest.mark.timeout(180)

BETWEEN_S = 0.05  # 40 words: two seconds per answer on the cheap node
BEFORE_SIGNAL_S = 1.0  # every call is mid-answer
AFTER_SIGNAL_S = 3.0
CALL_DEADLINE_S = 12.0  # an answer takes 2 s; a frozen node is declared so after ~1.5 s


@dataclass
class Mesh:
    router: RouterRuntime
    cheap: ServerProcess
    stub: inference_pb2_grpc.InferenceServiceStub


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    cheap, cheap_address = await asyncio.to_thread(
        start_slow_node, "cheap", tmp_path / "cheap.log", between_s=BETWEEN_S, words=ANSWER_WORDS
    )
    engine = FakeEngine()
    engine.script.words_per_answer = ANSWER_WORDS
    dear = NodeRuntime(
        NodeConfig(
            id="dear",
            engine="fake",
            model="fake-model",
            input_price_per_mtok=5,
            output_price_per_mtok=5,
            max_inflight=64,
        ),
        engine,
    )
    await dear.start()
    router = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            health_interval_s=0.3,
            guards=GuardSettings(watch=False, audit_url=f"sqlite+aiosqlite:///{tmp_path}/a.db"),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(enabled=False),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
        )
    )
    router.add_upstream("cheap", cheap_address)
    router.add_upstream("dear", dear.address)
    await router.start()
    try:
        async with grpc.aio.insecure_channel(router.address) as channel:
            yield Mesh(router, cheap, inference_pb2_grpc.InferenceServiceStub(channel))
    finally:
        await asyncio.to_thread(cheap.stop, 5)
        await router.stop(0)
        await dear.stop(0)


async def _lose_the_cheap_node(
    mesh: Mesh, sig: signal.Signals, scenario: Scenario, *, streams: int, unary: int
) -> tuple[Load, list[grpc.aio.AioRpcError]]:
    """Load on the cheap node, `sig` to it mid-answer, more load; the load and the calls cut."""
    signalled_at = float("inf")

    def cut_stream(err: grpc.aio.AioRpcError, started_at: float, streaming: bool) -> bool:
        # A stream committed to the lost node before the signal may end UNAVAILABLE.
        return streaming and err.code() == grpc.StatusCode.UNAVAILABLE and started_at < signalled_at

    load = Load(
        mesh.stub,
        deterministic(),
        scenario,
        streams=streams,
        unary=unary,
        timeout_s=CALL_DEADLINE_S,
        expected_failure=cut_stream,
    )
    entry = mesh.router.catalog.get("cheap")
    assert entry is not None and entry.healthy, "the calls must go to the cheap node first"
    task = load.start()
    try:
        await asyncio.sleep(BEFORE_SIGNAL_S)
        # Every call on the node before the signal, as its probes report it: on a slow machine
        # half of them were once still in the router's input stage at BEFORE_SIGNAL_S, and were
        # sent to the other node once a probe had seen this one die (neither fell back nor cut).
        on_node = streams + unary
        await wait_until(lambda: entry.load.running >= on_node or load.completed > 0, 5)
        assert entry.load.running >= on_node, f"{entry.load.running} of {on_node} on the node"
        assert load.completed == 0, "the calls must still be running on the cheap node"
        signalled_at = time.monotonic()
        os.kill(mesh.cheap.pid, sig)
        await asyncio.sleep(AFTER_SIGNAL_S)
    finally:
        load.stop()
        await asyncio.wait_for(task, CALL_DEADLINE_S + 10)
    cut = [
        err
        for start, err in load.failures
        if start < signalled_at and err.code() == grpc.StatusCode.UNAVAILABLE
    ]
    scenario.figure(
        f"{load.completed} answered exactly ({load.fell_back} after falling back), {len(cut)} "
        f"committed streams cut UNAVAILABLE; worst call {scenario.worst_s * 1000:.0f} ms"
    )
    return load, cut


async def test_a_killed_node_costs_only_its_committed_streams(
    mesh: Mesh, scenarios: ScenarioTable
) -> None:
    load, cut = await _lose_the_cheap_node(
        mesh, signal.SIGKILL, scenarios("fault: node SIGKILL, unary + streams"), streams=8, unary=8
    )
    # Unexpected failures (a unary call, a call after the kill, not UNAVAILABLE) and any wrong
    # text are problems.
    assert not load.problems, load.problems[:10]
    # Every call was on the node when it died: each fell back or, if committed, was cut.
    assert len(cut) + load.fell_back >= load.streams + load.unary
    assert len(cut) <= load.streams, "only streams are ever cut"
    entry = mesh.router.catalog.get("cheap")
    assert entry is not None and not entry.healthy


async def test_unary_calls_on_a_frozen_node_fall_back(mesh: Mesh, scenarios: ScenarioTable) -> None:
    try:
        load, cut = await _lose_the_cheap_node(
            mesh, signal.SIGSTOP, scenarios("fault: node SIGSTOP, unary"), streams=0, unary=8
        )
        assert not load.problems and not cut, load.problems[:10]
        assert load.fell_back >= load.unary, "the unary calls on the node fell back"
        entry = mesh.router.catalog.get("cheap")
        assert entry is not None and not entry.healthy
    finally:
        os.kill(mesh.cheap.pid, signal.SIGCONT)
    assert await wait_until(lambda: bool(mesh.router.catalog.get("cheap").healthy), 15)  # type: ignore[union-attr]


async def test_streams_committed_to_a_frozen_node_end_unavailable(
    mesh: Mesh, scenarios: ScenarioTable
) -> None:
    try:
        load, cut = await _lose_the_cheap_node(
            mesh,
            signal.SIGSTOP,
            scenarios("fault: node SIGSTOP, committed streams"),
            streams=8,
            unary=0,
        )
    finally:
        os.kill(mesh.cheap.pid, signal.SIGCONT)
    assert not load.problems, load.problems[:10]
    assert len(cut) + load.fell_back >= load.streams

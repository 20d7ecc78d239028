"""Faults: the router crashes (SIGKILL) and restarts while registered nodes serve load.

`mesh router` runs in its own process with registration in token mode; two nodes on FakeEngine
(a deterministic test engine, named as such) register with the token and heartbeat. Clients
stream and call through the router the whole time. After the crash a new router process starts
on the same address with an empty routing table: the nodes must find it, register again with the
token, and every call started after that must answer with exactly the engine's text. Calls
during the outage may fail only as a client sees a router that is away (UNAVAILABLE) or one that
has no node yet (FAILED_PRECONDITION NO_ROUTE).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest

from mesh.config import NodeConfig
from mesh.contract.serving import channel_options
from mesh.contract.status import error_details
from mesh.v1 import inference_pb2_grpc, registry_pb2, registry_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.fixtures.router_process import start_router, write_config
from tests.process import free_address
from tests.reliability.load import ANSWER_WORDS, Load, deterministic
from tests.reliability.scenarios import ScenarioTable

pytestmark = pytest.mark.timeout(240)

TOKEN = "restart-registration-token-5a9c1e7b3d"
LOAD_S = 2.0
RECOVERY_S = 60.0  # bound on the new router start plus the nodes' back-off


async def _registered(address: str) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            page = await stub.ListNodes(registry_pb2.ListNodesRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return set()
    return {n.node_id for n in page.nodes if n.source == registry_pb2.NODE_SOURCE_REGISTERED}


async def _until_registered(address: str, ids: set[str]) -> None:
    deadline = time.monotonic() + RECOVERY_S
    while await _registered(address) != ids:
        assert time.monotonic() < deadline, f"nodes {sorted(ids)} not registered again"
        await asyncio.sleep(0.2)


async def test_registered_nodes_serve_again_after_a_router_crash(
    tmp_path: Path, scenarios: ScenarioTable
) -> None:
    scenario = scenarios("fault: router SIGKILL + restart")
    token_file = tmp_path / "registration-token"
    token_file.write_text(TOKEN + "\n")
    address = free_address()
    config = write_config(
        tmp_path / "router.yaml",
        address,
        {
            "registry": {"token_file": str(token_file), "heartbeat_interval_s": 0.2, "ttl_s": 2},
            "guards": {"watch": False},
            "cache": {"enabled": False},
            "routing": {"estimator": {"embeddings": False}},
        },
    )
    data = tmp_path / "router-data"
    router = start_router(config, data, log=tmp_path / "router-1.log")
    nodes: list[NodeRuntime] = []
    try:
        await router.wait_until_serving_async(address)
        for i, price in enumerate((0.1, 0.2)):
            engine = FakeEngine()
            engine.script.words_per_answer = ANSWER_WORDS
            config_i = NodeConfig(
                id=f"joiner-{i}",
                engine="fake",
                model="fake-model",
                input_price_per_mtok=price,
                output_price_per_mtok=price,
                router_address=address,
                router_token_file=token_file,
                heartbeat_interval_s=0.2,
            )
            nodes.append(NodeRuntime(config_i, engine))
            await nodes[-1].start()
        ids = {n.config.id for n in nodes}
        await _until_registered(address, ids)

        crashed_at = recovered_at = float("inf")

        def during_outage(err: grpc.aio.AioRpcError, started_at: float, streaming: bool) -> bool:
            if started_at >= recovered_at or time.monotonic() < crashed_at:
                return False
            if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return bool(error_details(err).reason == "NO_ROUTE")
            return bool(err.code() == grpc.StatusCode.UNAVAILABLE)

        async with grpc.aio.insecure_channel(address, options=channel_options()) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            load = Load(
                stub,
                deterministic(),
                scenario,
                streams=6,
                unary=4,
                timeout_s=20,
                expected_failure=during_outage,
            )
            task = load.start()
            try:
                await asyncio.sleep(LOAD_S)
                crashed_at = time.monotonic()
                os.kill(router.pid, signal.SIGKILL)
                await router.wait_exit_async(10)
                router = start_router(config, data, log=tmp_path / "router-2.log")
                await router.wait_until_serving_async(address)
                await _until_registered(address, ids)
                recovered_at = time.monotonic()
                await asyncio.sleep(LOAD_S)
            finally:
                load.stop()
                await asyncio.wait_for(task, 30)
        scenario.figure(
            f"back {recovered_at - crashed_at:.1f} s after the crash (start + re-registration); "
            f"{load.completed} answered exactly, {len(load.failures)} failed during the outage"
        )
        assert not load.problems, load.problems[:10]
        assert any(start >= recovered_at for start in load.answered), "served after recovery"
        for node in nodes:
            loop = node.registration
            assert loop is not None
            assert loop.registrations == 2 and loop.registered and loop.failure is None
    finally:
        for node in nodes:
            await node.stop(0)
        await router.stop_async()

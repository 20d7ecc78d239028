"""Registered nodes shared by router replicas through PostgreSQL (tests/fixtures/postgres.py).

Two real `mesh router` processes on one database, registration in token mode. A `mesh node
--engine fake` (FakeEngine: a deterministic test engine, named as such) registers through
replica A only and is routed to from replica B; a registration lease issued by A is honoured by
B, and refused to anyone else, through either replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest

from mesh.contract.node_token import NODE_TOKEN_HEADER
from mesh.contract.status import error_details
from mesh.v1 import registry_pb2, types_pb2
from tests.fixtures.replicas import Replica, lean_router, mesh_env, router_replicas
from tests.helpers import request
from tests.process import free_address, start_mesh
from tests.registry_client import register, with_lease

TOKEN = "shared-registry-test-token-0123456789abcdef"
TOKEN_MD = ((NODE_TOKEN_HEADER, TOKEN),)
HEARTBEAT_S = 1.0


def _registry_router(url: str) -> dict[str, object]:
    # ttl 3 s: a node gone silent leaves both tables within a few seconds.
    return lean_router(
        url, registry={"mode": "token", "heartbeat_interval_s": HEARTBEAT_S, "ttl_s": 3.0}
    )


async def _listed(replica: Replica) -> set[str]:
    reply = await replica.registry.ListNodes(registry_pb2.ListNodesRequest(), timeout=5)
    return {n.node_id for n in reply.nodes}


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> float:
    """Seconds until `check` held (fails after `timeout_s`)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout_s, "condition not reached"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_node_registered_through_one_replica_is_routed_to_from_the_other(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    env = mesh_env(MESH_REGISTRY_TOKEN=TOKEN)
    routers = [_registry_router(fresh_postgres_url)] * 2
    async with router_replicas(tmp_path, routers, env) as (a, b):
        node = start_mesh(
            "node", "--engine", "fake", "--node-id", "n1", "--listen", free_address(),
            "--router", a.address, "--heartbeat-interval", str(HEARTBEAT_S),
            "--price-in", "0.1", "--price-out", "0.2",
            env=env, log=tmp_path / "node.log",
        )  # fmt: skip
        async with node:

            async def on_a() -> bool:
                return "n1" in await _listed(a)

            async def on_b() -> bool:
                return "n1" in await _listed(b)

            await _eventually(on_a, timeout_s=240)  # the node process starts meanwhile
            lag_s = await _eventually(on_b)
            print(f"n1 listed by replica B {lag_s:.2f}s after replica A")
            reply = await b.stub.Generate(request("Hello from B", max_tokens=4), timeout=30)
            assert reply.route.node_id == "n1" and reply.text
            # The node heartbeats through A only; B keeps it past the TTL from the table.
            await asyncio.sleep(4.0)
            assert "n1" in await _listed(b)
            assert await node.stop_async() == 0  # SIGTERM: the node deregisters through A

            async def gone_from_b() -> bool:
                return "n1" not in await _listed(b)

            await _eventually(gone_from_b)
        assert TOKEN not in a.process.output() + b.process.output()


async def test_a_lease_from_one_replica_is_honoured_by_the_other_and_only_for_its_holder(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    env = mesh_env(MESH_REGISTRY_TOKEN=TOKEN)
    routers = [_registry_router(fresh_postgres_url)] * 2
    async with router_replicas(tmp_path, routers, env) as (a, b):
        card = types_pb2.ModelCard(
            model_id="m2",
            provider="self-hosted",
            kind=types_pb2.MODEL_KIND_SELF_HOSTED,
            tier=types_pb2.MODEL_TIER_SMALL,
            context_window=1024,
            input_price_per_mtok=0.1,
            output_price_per_mtok=0.2,
        )
        n2 = registry_pb2.RegisterRequest(node_id="n2", address=free_address(), models=[card])
        _, lease = await register(a.registry, n2, TOKEN_MD)
        beat = registry_pb2.HeartbeatRequest(node_id="n2")
        # B knows the node the moment a registry call names it (it reads the table first).
        reply = await b.registry.Heartbeat(beat, metadata=with_lease(lease, TOKEN_MD), timeout=5)
        assert reply.known
        with pytest.raises(grpc.aio.AioRpcError) as stranger:
            await b.registry.Heartbeat(beat, metadata=TOKEN_MD, timeout=5)
        assert stranger.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_details(stranger.value).reason == "NOT_REGISTRATION_OWNER"
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await register(b.registry, n2, TOKEN_MD)  # the same id, without the lease
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_details(taken.value).reason == "NODE_ID_TAKEN"
        # The holder refreshes through B with the lease A issued: same lease back.
        _, again = await register(b.registry, n2, with_lease(lease, TOKEN_MD))
        assert again == lease

        async def on_a_and_b() -> bool:
            return "n2" in await _listed(a) and "n2" in await _listed(b)

        await _eventually(on_a_and_b)
        await b.registry.Deregister(
            registry_pb2.DeregisterRequest(node_id="n2"),
            metadata=with_lease(lease, TOKEN_MD),
            timeout=5,
        )

        async def gone_from_a() -> bool:
            return "n2" not in await _listed(a)

        await _eventually(gone_from_a)
        # Free again: anyone with the token may register the id, through either replica.
        _, fresh = await register(a.registry, n2, TOKEN_MD)
        assert fresh != lease

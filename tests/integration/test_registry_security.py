"""The registry hijack of issue 14, as regression tests against a real router on loopback.

Each test runs a real RouterRuntime (grpc.aio, 127.0.0.1) and FakeEngine nodes (a deterministic
test engine, named as such): who gets into the routing table, and so who receives tenants'
prompts, is the mesh's own logic. The attacks: a client registering a price-0 node without a
token; registering over a static upstream's id; a token holder deregistering or re-pointing
another node's registration; one 849 KB Register with 20,000 cards; a flood of registry writes.
Outcomes and counts are asserted, never timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.config import (
    ApiKeyConfig,
    AuthSettings,
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    MeshConfig,
    NodeConfig,
    RegistrySettings,
    RouterConfig,
    RoutingSettings,
)
from mesh.contract.errors import MeshError
from mesh.contract.node_token import NODE_TOKEN_HEADER
from mesh.contract.status import error_details
from mesh.embedded import EmbeddedMesh
from mesh.router.app import RouterRuntime
from mesh.router.auth import hash_api_key
from mesh.v1 import registry_pb2, registry_pb2_grpc
from mesh.v1 import types_pb2 as t
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import health_status, request, wait_until
from tests.registry_client import register

TOKEN = "registry-sec-token-4b7e2a9c1d3f"
TENANT_KEYS = {"acme": "acme-key-1", "globex": "globex-key-2"}
REQUESTS = 20


def _token_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry-token"
    path.write_text(TOKEN + "\n")
    return path


def fake_node(node_id: str, *, price: float = 0.1, **extra: Any) -> NodeRuntime:
    config = NodeConfig(
        id=node_id,
        engine="fake",
        model="shared-model",
        input_price_per_mtok=price,
        output_price_per_mtok=2 * price,
        **extra,
    )
    return NodeRuntime(config, FakeEngine(model_id="shared-model"))


def engine(node: NodeRuntime) -> FakeEngine:
    assert isinstance(node.backend, FakeEngine)
    return node.backend


@dataclass
class Router:
    runtime: RouterRuntime
    channel: grpc.aio.Channel

    @property
    def registry(self) -> registry_pb2_grpc.RegistryServiceStub:
        return registry_pb2_grpc.RegistryServiceStub(self.channel)  # type: ignore[no-untyped-call]

    async def generate(self, tenant: str = "acme") -> Any:
        from mesh.v1 import inference_pb2_grpc

        stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        return await stub.Generate(
            request(), metadata=(("x-api-key", TENANT_KEYS[tenant]),), timeout=15
        )

    async def listed(self) -> list[tuple[str, str, int]]:
        page = await self.registry.ListNodes(registry_pb2.ListNodesRequest(), timeout=5)
        return [(n.node_id, n.address, n.source) for n in page.nodes]


@contextlib.asynccontextmanager
async def router(
    registry: RegistrySettings, static: Sequence[NodeRuntime] = ()
) -> AsyncIterator[Router]:
    """A real router (no guards, cache, ledger or MiniLM: not under test) with static nodes."""
    auth = AuthSettings(
        api_keys=[
            ApiKeyConfig(name=tenant, sha256=hash_api_key(key), tenant=tenant)
            for tenant, key in TENANT_KEYS.items()
        ]
    )
    runtime = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            health_interval_s=0.2,
            guards=GuardSettings(enabled=False),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(enabled=False),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
            auth=auth,
            registry=registry,
        )
    )
    for node in static:
        runtime.add_upstream(node.config.id, node.address)
    await runtime.start()
    try:
        async with grpc.aio.insecure_channel(runtime.address) as channel:
            yield Router(runtime, channel)
    finally:
        await runtime.stop(0)


@contextlib.asynccontextmanager
async def running(*nodes: NodeRuntime) -> AsyncIterator[None]:
    for node in nodes:
        await node.start()
    try:
        yield
    finally:
        await asyncio.gather(*(n.stop(grace_s=0.5) for n in nodes), return_exceptions=True)


def intruder_card() -> t.ModelCard:
    """What an attacker claims: the tenants' model, top tier, free."""
    return t.ModelCard(
        model_id="shared-model",
        provider="self-hosted",
        kind=t.MODEL_KIND_SELF_HOSTED,
        tier=t.MODEL_TIER_FRONTIER,
        context_window=128_000,
        input_price_per_mtok=0.0,
        output_price_per_mtok=0.0,
    )


async def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), error_details(info.value).reason


async def all_requests_go_to(mesh: Router, node: NodeRuntime, intruder: NodeRuntime) -> None:
    """REQUESTS calls from two tenants: every one answered by `node`, none by the intruder."""
    replies = await asyncio.gather(
        *(mesh.generate("acme" if i % 2 else "globex") for i in range(REQUESTS))
    )
    assert [r.route.node_id for r in replies] == [node.config.id] * REQUESTS
    assert engine(node).completed == REQUESTS and engine(intruder).completed == 0


# --- 1. no token: registration is off; a price-0 intruder gets no traffic --------------------
@pytest.mark.parametrize("mode", ["default-off", "token"])
async def test_a_price_zero_node_registered_without_a_token_gets_no_traffic(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    settings = (
        RegistrySettings()
        if mode == "default-off"
        else RegistrySettings(token_file=_token_file(tmp_path))
    )
    real, intruder = fake_node("real"), fake_node("intruder", price=0.0)
    async with running(real, intruder), router(settings, static=[real]) as mesh:
        hijack = registry_pb2.RegisterRequest(
            node_id="free-frontier", address=intruder.address, models=[intruder_card()]
        )
        expected = (
            (grpc.StatusCode.PERMISSION_DENIED, "REGISTRATION_DISABLED")
            if mode == "default-off"
            else (grpc.StatusCode.UNAUTHENTICATED, "NODE_TOKEN_MISSING")
        )
        assert await refused(mesh.registry.Register(hijack, timeout=5)) == expected
        for write in (
            mesh.registry.Heartbeat(registry_pb2.HeartbeatRequest(node_id="real"), timeout=5),
            mesh.registry.Deregister(registry_pb2.DeregisterRequest(node_id="real"), timeout=5),
        ):
            assert await refused(write) == expected
        await all_requests_go_to(mesh, real, intruder)
        # The table stays readable without a token, and shows only the real node.
        assert await mesh.listed() == [("real", real.address, registry_pb2.NODE_SOURCE_STATIC)]


async def test_a_node_refused_by_a_closed_registry_says_why_once_and_keeps_serving(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    caplog.set_level(logging.INFO)
    async with router(RegistrySettings(heartbeat_interval_s=0.1, ttl_s=1)) as mesh:
        node = fake_node("hopeful", router_address=mesh.runtime.address, heartbeat_interval_s=0.05)
        async with running(node):
            loop = node.registration
            assert loop is not None
            assert await wait_until(lambda: loop.consecutive_failures >= 3, timeout_s=15)
            assert loop.failure == "refused" and not loop.registered
            assert len(mesh.runtime.catalog) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "nodes.registration"]
    refusals = [line for line in lines if "refused node hopeful" in line]
    assert len(refusals) == 1, lines
    assert "REGISTRATION_DISABLED" in refusals[0] and "registration token" in refusals[0]
    router_lines = [r.getMessage() for r in caplog.records if r.name == "mesh.router.registry"]
    assert router_lines[0].startswith("node registration: off (")


# --- 2. static upstream ids cannot be registered over ---------------------------------------
@pytest.mark.parametrize("mode", ["open", "token"])
async def test_a_static_upstream_id_cannot_be_registered_over(mode: str, tmp_path: Path) -> None:
    settings = (
        RegistrySettings(mode="open")
        if mode == "open"
        else RegistrySettings(token_file=_token_file(tmp_path))
    )
    credential = ((NODE_TOKEN_HEADER, TOKEN),) if mode == "token" else ()
    real, intruder = fake_node("real"), fake_node("intruder", price=0.0)
    async with running(real, intruder), router(settings, static=[real]) as mesh:
        takeover = registry_pb2.RegisterRequest(
            node_id="real", address=intruder.address, models=[intruder_card()]
        )
        code, reason = await refused(mesh.registry.Register(takeover, metadata=credential))
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "NODE_ID_STATIC")
        fake_load = registry_pb2.HeartbeatRequest(node_id="real", load=t.NodeLoad(waiting=999))
        for write in (
            mesh.registry.Heartbeat(fake_load, metadata=credential),
            mesh.registry.Deregister(
                registry_pb2.DeregisterRequest(node_id="real"), metadata=credential
            ),
        ):
            assert await refused(write) == (grpc.StatusCode.PERMISSION_DENIED, "NODE_ID_STATIC")
        await all_requests_go_to(mesh, real, intruder)
        assert await mesh.listed() == [("real", real.address, registry_pb2.NODE_SOURCE_STATIC)]
        entry = mesh.runtime.catalog.get("real")
        assert entry is not None and entry.static and entry.load.waiting != 999


async def test_nodes_and_bridges_mesh_up_starts_are_static_and_protected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    config = MeshConfig(
        router=RouterConfig(
            listen="127.0.0.1:0",
            guards=GuardSettings(enabled=False),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(enabled=False),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
            registry=RegistrySettings(mode="open"),
        ),
        nodes=[NodeConfig(id="embedded-node", engine="fake", model="fake-model")],
    )
    mesh = EmbeddedMesh(config)
    address = await mesh.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
            takeover = registry_pb2.RegisterRequest(
                node_id="embedded-node", address="127.0.0.1:9", models=[intruder_card()]
            )
            assert await refused(stub.Register(takeover, timeout=5)) == (
                grpc.StatusCode.ALREADY_EXISTS,
                "NODE_ID_STATIC",
            )
        entry = mesh.router.catalog.get("embedded-node")
        assert entry is not None and entry.static and entry.address == mesh.nodes[0].address
    finally:
        await mesh.stop(0)


# --- 3. a registration belongs to its registrant --------------------------------------------
async def test_a_token_holder_cannot_deregister_or_repoint_another_nodes_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("TEST_REGISTRY_SEC_TOKEN", TOKEN)
    settings = RegistrySettings(heartbeat_interval_s=0.1, ttl_s=2, token_file=_token_file(tmp_path))
    intruder = fake_node("intruder", price=0.0)
    async with running(intruder), router(settings) as mesh:
        good = fake_node(
            "good",
            router_address=mesh.runtime.address,
            router_token_env="TEST_REGISTRY_SEC_TOKEN",
            heartbeat_interval_s=0.05,
        )
        async with running(good):
            loop = good.registration
            assert loop is not None
            assert await wait_until(lambda: loop.heartbeats >= 2, timeout_s=15)
            token = ((NODE_TOKEN_HEADER, TOKEN),)  # the shared token: every node holds it
            assert await refused(
                mesh.registry.Deregister(
                    registry_pb2.DeregisterRequest(node_id="good"), metadata=token
                )
            ) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_REGISTRATION_OWNER")
            repoint = registry_pb2.RegisterRequest(
                node_id="good", address=intruder.address, models=[intruder_card()]
            )
            assert await refused(mesh.registry.Register(repoint, metadata=token)) == (
                grpc.StatusCode.ALREADY_EXISTS,
                "NODE_ID_TAKEN",
            )
            assert await refused(
                mesh.registry.Heartbeat(
                    registry_pb2.HeartbeatRequest(node_id="good", load=t.NodeLoad(waiting=999)),
                    metadata=token,
                )
            ) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_REGISTRATION_OWNER")
            await all_requests_go_to(mesh, good, intruder)
            beats = loop.heartbeats
            assert await wait_until(lambda: loop.heartbeats >= beats + 2, timeout_s=15)
            assert loop.registrations == 1 and loop.failure is None
            entry = mesh.runtime.catalog.get("good")
            assert entry is not None and entry.address == good.address
        # The node's own goodbye (with its lease) is accepted.
        assert await wait_until(lambda: mesh.runtime.catalog.get("good") is None, timeout_s=5)
    lease_lines = [r.getMessage() for r in caplog.records if "lease" in r.getMessage().lower()]
    assert all("x-mesh-registration-lease" in line for line in lease_lines), lease_lines


# --- 4. the card flood ----------------------------------------------------------------------
def card_flood() -> registry_pb2.RegisterRequest:
    """The issue's Register: 20,000 model cards, 849 KB on the wire."""
    cards = [
        t.ModelCard(
            model_id=f"free-frontier-model-{i:05d}",
            provider="flood",
            kind=t.MODEL_KIND_SELF_HOSTED,
            tier=t.MODEL_TIER_FRONTIER,
            context_window=128_000,
        )
        for i in range(20_000)
    ]
    return registry_pb2.RegisterRequest(node_id="flood", address="127.0.0.1:9", models=cards)


async def test_a_card_flood_is_refused_and_other_tenants_are_served_meanwhile() -> None:
    flood = card_flood()
    assert 800_000 < flood.ByteSize() < 900_000
    real, intruder = fake_node("real"), fake_node("intruder", price=0.0)
    async with running(real, intruder), router(RegistrySettings(mode="open"), [real]) as mesh:
        floods = [mesh.registry.Register(flood, timeout=30) for _ in range(10)]
        served = [mesh.generate("acme" if i % 2 else "globex") for i in range(REQUESTS)]
        results = await asyncio.gather(*floods, *served, return_exceptions=True)
        flood_results, replies = results[: len(floods)], results[len(floods) :]
        for result in flood_results:
            assert isinstance(result, grpc.aio.AioRpcError)
            assert result.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_details(result).reason == "REGISTRATION_TOO_LARGE"
        for reply in replies:
            assert not isinstance(reply, BaseException), reply
            assert reply.route.node_id == "real" and len(reply.route.candidates) == 1
        assert engine(real).completed == REQUESTS and engine(intruder).completed == 0
        assert mesh.runtime.catalog.registered_count() == 0
        assert await health_status(mesh.channel) == "SERVING"

        # Small enough to be parsed, but 17 cards: the count rule, with a field violation.
        seventeen = registry_pb2.RegisterRequest(
            node_id="flood", address=intruder.address, models=list(flood.models[:17])
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await mesh.registry.Register(seventeen, timeout=5)
        details = error_details(info.value)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [(v.field, v.description) for v in details.violations] == [
            ("models", "at most 16 model cards per node")
        ]


async def test_invalid_cards_are_refused_with_field_violations() -> None:
    async with router(RegistrySettings(mode="open")) as mesh:
        bad = registry_pb2.RegisterRequest(
            node_id="bad node",
            address="0.0.0.0:99999",
            models=[
                t.ModelCard(
                    model_id="m",
                    tier=99,  # type: ignore[arg-type]
                    input_price_per_mtok=-1.0,
                    output_price_per_mtok=float("nan"),
                )
            ],
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await mesh.registry.Register(bad, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields = {v.field for v in error_details(info.value).violations}
        assert fields == {
            "node_id",
            "address",
            "models[0].tier",
            "models[0].input_price_per_mtok",
            "models[0].output_price_per_mtok",
        }
        assert len(mesh.runtime.catalog) == 0


# --- 5. rate limits per peer; scheduled heartbeats never limited -----------------------------
async def test_registry_writes_are_rate_limited_but_a_nodes_heartbeats_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nodes.registration")
    monkeypatch.setenv("TEST_REGISTRY_SEC_TOKEN", TOKEN)
    settings = RegistrySettings(
        heartbeat_interval_s=0.1,
        ttl_s=2,
        token_file=_token_file(tmp_path),
        max_registrations_per_minute=2,  # one token every 30 s: no refill during the test
    )
    async with router(settings) as mesh:
        good = fake_node(
            "good",
            router_address=mesh.runtime.address,
            router_token_env="TEST_REGISTRY_SEC_TOKEN",
            heartbeat_interval_s=0.05,
        )
        async with running(good):
            loop = good.registration
            assert loop is not None
            assert await wait_until(lambda: loop.heartbeats >= 1, timeout_s=15)
            beats = loop.heartbeats
            outcomes: list[str] = []
            token = ((NODE_TOKEN_HEADER, TOKEN),)  # same host as the node: the same bucket
            for i in range(30):
                try:
                    await register(
                        mesh.registry,
                        registry_pb2.RegisterRequest(
                            node_id=f"spam-{i}", address="127.0.0.1:9", models=[intruder_card()]
                        ),
                        token,
                    )
                    outcomes.append("accepted")
                except grpc.aio.AioRpcError as err:
                    details = error_details(err)
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert details.reason == "REGISTRY_RATE_LIMITED"
                    assert details.retry_after_s is not None and details.retry_after_s > 0
                    outcomes.append("limited")
            assert outcomes.count("accepted") <= 2 and outcomes.count("limited") >= 28
            # The node's heartbeats kept going through the whole flood, and after it.
            assert await wait_until(lambda: loop.heartbeats >= beats + 5, timeout_s=15)
            assert loop.registrations == 1 and loop.failure is None
            assert mesh.runtime.catalog.get("good") is not None
    assert not [r for r in caplog.records if "refused node good" in r.getMessage()]


# --- 6. open mode never off loopback --------------------------------------------------------
async def test_open_mode_is_refused_at_start_off_loopback() -> None:
    config = RouterConfig(
        listen="127.0.0.1:0",
        guards=GuardSettings(enabled=False),
        cache=CacheSettings(enabled=False),
        ledger=LedgerSettings(enabled=False),
        routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
        registry=RegistrySettings(mode="open"),
    )
    runtime = RouterRuntime(config)
    with pytest.raises(MeshError) as info:
        await runtime.start("0.0.0.0:0")
    assert info.value.reason == "OPEN_REGISTRATION_OFF_LOOPBACK" and runtime.address == ""
    await runtime.stop(0)
    with pytest.raises(MeshError, match="loopback listen address only"):
        EmbeddedMesh(MeshConfig(router=config), listen="0.0.0.0:0")

"""RegistryService's write rules over a real grpc.aio server: leases, static ids, sizes, rates.

The servicer is the router's own (open mode, loopback), served as the router serves it
(`add_registry_service`); the clock of its rate limiter is a fake one so no test sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest

from mesh.config import RegistrySettings
from mesh.contract.registration import LEASE_HEADER
from mesh.contract.status import error_details
from mesh.router.catalog import Catalog
from mesh.router.registry import RegistryServicer
from mesh.router.registry_auth import RegistryAccess
from mesh.v1 import registry_pb2, registry_pb2_grpc
from mesh.v1 import types_pb2 as t
from tests.registry_client import register, serve_registry, with_lease

CARD = t.ModelCard(model_id="m", tier=t.MODEL_TIER_SMALL)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Registry:
    catalog: Catalog
    servicer: RegistryServicer
    stub: registry_pb2_grpc.RegistryServiceStub
    clock: FakeClock


async def _serve(settings: RegistrySettings) -> AsyncIterator[Registry]:
    clock = FakeClock()
    catalog = Catalog(
        ttl_s=settings.ttl_s, heartbeat_interval_s=settings.heartbeat_interval_s, clock=clock
    )
    catalog.add_static("static-1", "10.9.9.9:50061", [CARD])
    servicer = RegistryServicer(
        catalog, access=RegistryAccess.open(), settings=settings, clock=clock
    )
    async with serve_registry(servicer) as (_, stub):
        yield Registry(catalog, servicer, stub, clock)


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async for served in _serve(RegistrySettings(mode="open", ttl_s=10, heartbeat_interval_s=2)):
        yield served


def _req(node_id: str = "n1", address: str = "127.0.0.1:9") -> registry_pb2.RegisterRequest:
    return registry_pb2.RegisterRequest(node_id=node_id, address=address, models=[CARD])


async def _status(call: object) -> tuple[grpc.StatusCode, str, grpc.aio.AioRpcError]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code(), error_details(info.value).reason, info.value


async def test_only_the_lease_holder_may_heartbeat_refresh_or_deregister(
    registry: Registry,
) -> None:
    stub, catalog = registry.stub, registry.catalog
    _, lease = await register(stub, _req())
    other = "x" * 43
    for metadata in ((), with_lease(other)):
        code, reason, _ = await _status(
            stub.Deregister(registry_pb2.DeregisterRequest(node_id="n1"), metadata=metadata)
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_REGISTRATION_OWNER")
        code, reason, _ = await _status(
            stub.Heartbeat(
                registry_pb2.HeartbeatRequest(node_id="n1", load=t.NodeLoad(waiting=0)),
                metadata=metadata,
            )
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_REGISTRATION_OWNER")
        # Re-pointing the id elsewhere: taken until the holder leaves or its TTL runs out.
        code, reason, err = await _status(
            stub.Register(_req(address="127.0.0.1:6666"), metadata=metadata)
        )
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "NODE_ID_TAKEN")
        assert error_details(err).retry_after_s == pytest.approx(10, abs=0.5)
    entry = catalog.get("n1")
    assert entry is not None and entry.address == "127.0.0.1:9"

    # The holder refreshes (same lease echoed back), heartbeats and leaves.
    registry.clock.now += 2
    _, again = await register(stub, _req(address="127.0.0.1:10"), with_lease(lease))
    assert again == lease and catalog.get("n1").address == "127.0.0.1:10"  # type: ignore[union-attr]
    registry.clock.now += 2
    beat = await stub.Heartbeat(
        registry_pb2.HeartbeatRequest(node_id="n1"), metadata=with_lease(lease)
    )
    assert beat.known
    await stub.Deregister(registry_pb2.DeregisterRequest(node_id="n1"), metadata=with_lease(lease))
    assert catalog.get("n1") is None
    # Gone: a goodbye said twice is fine, and the id is free for anyone, with a new lease.
    await stub.Deregister(registry_pb2.DeregisterRequest(node_id="n1"), metadata=with_lease(lease))
    _, fresh = await register(stub, _req(), with_lease(lease))
    assert fresh != lease


async def test_an_expired_registration_frees_its_id(registry: Registry) -> None:
    await register(registry.stub, _req())
    registry.clock.now += 11  # past the TTL without heartbeats
    _, lease = await register(registry.stub, _req(address="127.0.0.1:7"))
    entry = registry.catalog.get("n1")
    assert entry is not None and entry.address == "127.0.0.1:7" and lease


async def test_static_ids_cannot_be_registered_heartbeat_or_deregistered(
    registry: Registry,
) -> None:
    stub = registry.stub
    code, reason, err = await _status(stub.Register(_req("static-1", "127.0.0.1:6666")))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "NODE_ID_STATIC")
    assert "static upstream" in (err.details() or "")
    assert error_details(err).metadata == {"node_id": "static-1"}
    for call in (
        stub.Heartbeat(registry_pb2.HeartbeatRequest(node_id="static-1")),
        stub.Deregister(registry_pb2.DeregisterRequest(node_id="static-1")),
    ):
        code, reason, _ = await _status(call)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NODE_ID_STATIC")
    entry = registry.catalog.get("static-1")
    assert entry is not None and entry.static and entry.address == "10.9.9.9:50061"


async def test_a_register_above_its_size_limit_is_refused_unparsed() -> None:
    settings = RegistrySettings(mode="open", max_register_bytes=2048)
    async for served in _serve(settings):
        big = registry_pb2.RegisterRequest(
            node_id="n1",
            address="127.0.0.1:9",
            models=[t.ModelCard(model_id=f"m{i}", tier=t.MODEL_TIER_SMALL) for i in range(400)],
        )
        size = big.ByteSize()
        code, reason, err = await _status(served.stub.Register(big))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REGISTRATION_TOO_LARGE")
        details = error_details(err)
        assert details.metadata == {"bytes": str(size), "limit": "2048"}
        assert [v.field for v in details.violations] == [""]
        # Heartbeat, Deregister and ListNodes have a small fixed limit.
        code, reason, _ = await _status(
            served.stub.Heartbeat(registry_pb2.HeartbeatRequest(node_id="n" * 20_000))
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REGISTRATION_TOO_LARGE")
        code, reason, _ = await _status(
            served.stub.ListNodes(registry_pb2.ListNodesRequest(page_token="t" * 20_000))
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REGISTRATION_TOO_LARGE")
        assert served.catalog.registered_count() == 0


async def test_writes_are_rate_limited_per_peer_but_scheduled_heartbeats_never() -> None:
    settings = RegistrySettings(
        mode="open", ttl_s=10, heartbeat_interval_s=2, max_registrations_per_minute=3
    )
    async for served in _serve(settings):
        stub, clock = served.stub, served.clock
        _, lease = await register(stub, _req("n1"))
        await register(stub, _req("n2"))
        await register(stub, _req("n3"))
        code, reason, err = await _status(stub.Register(_req("n4")))
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REGISTRY_RATE_LIMITED")
        details = error_details(err)
        assert details.retry_after_s == pytest.approx(20, abs=0.1)  # 3 per minute
        assert details.metadata == {"limit": "max_registrations_per_minute"}
        # The bucket is empty, yet n1's heartbeats at its interval all go through...
        for _ in range(50):
            clock.now += 2
            beat = await stub.Heartbeat(
                registry_pb2.HeartbeatRequest(node_id="n1"), metadata=with_lease(lease)
            )
            assert beat.known
        # ...(the bucket refilled meanwhile: drain it again) while off-schedule ones count.
        while True:
            try:
                await stub.Heartbeat(registry_pb2.HeartbeatRequest(node_id="ghost"))
            except grpc.aio.AioRpcError as refused:
                assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                break
        code, reason, _ = await _status(
            stub.Heartbeat(registry_pb2.HeartbeatRequest(node_id="n1"), metadata=with_lease(lease))
        )  # 0 s after the last one: a burst, counted, and the bucket is empty
        assert reason == "REGISTRY_RATE_LIMITED"
        clock.now += 2
        beat = await stub.Heartbeat(
            registry_pb2.HeartbeatRequest(node_id="n1"), metadata=with_lease(lease)
        )
        assert beat.known


async def test_the_table_of_registered_nodes_is_bounded() -> None:
    async for served in _serve(RegistrySettings(mode="open", max_registered_nodes=2)):
        await register(served.stub, _req("n1"))
        _, lease = await register(served.stub, _req("n2"))
        code, reason, _ = await _status(served.stub.Register(_req("n3")))
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REGISTRY_FULL")
        # A holder refreshing its own entry is not a new one.
        await register(served.stub, _req("n2"), with_lease(lease))
        assert served.catalog.registered_count() == 2


async def test_the_lease_travels_in_trailing_metadata_only_on_success(registry: Registry) -> None:
    call = registry.stub.Register(_req("static-1"))
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    trailing = await call.trailing_metadata()
    assert LEASE_HEADER not in {k for k, _ in trailing or ()}
    entry_lease = (await register(registry.stub, _req()))[1]
    entry = registry.catalog.get("n1")
    assert entry is not None and entry_lease.encode() not in entry.lease_digest
    assert entry_lease not in repr(entry)

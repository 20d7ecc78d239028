"""Routing table: TTL expiry, static nodes, pagination, and RegistryService over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from mesh.contract.status import error_details
from mesh.router.breaker import OPEN
from mesh.router.catalog import Catalog
from mesh.router.registry import RegistryServicer
from mesh.router.registry_auth import RegistryAccess
from mesh.v1 import registry_pb2, registry_pb2_grpc
from mesh.v1 import types_pb2 as t
from tests.registry_client import register, serve_registry, with_lease


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


CARD = t.ModelCard(model_id="smollm2", tier=t.MODEL_TIER_SMALL)


def test_registered_nodes_expire_static_nodes_stay() -> None:
    clock = FakeClock()
    cat = Catalog(ttl_s=10, clock=clock, wall_clock=clock)
    cat.add_static("static-1", "10.0.0.1:50051", [CARD])
    cat.register("reg-1", "127.0.0.1:1", [CARD], t.NodeLoad(running=1))
    assert [e.node_id for e in cat.entries()] == ["reg-1", "static-1"]
    clock.now += 8
    assert cat.heartbeat("reg-1", t.NodeLoad(running=3))
    clock.now += 8
    assert cat.get("reg-1") is not None and cat.get("reg-1").load.running == 3  # type: ignore[union-attr]
    clock.now += 3
    assert [e.node_id for e in cat.entries()] == ["static-1"]
    assert not cat.heartbeat("reg-1", t.NodeLoad())  # unknown now: must register again
    assert not cat.deregister("static-1")


def test_a_static_id_is_never_registered_over() -> None:
    cat = Catalog(ttl_s=10)
    cat.add_static("static-1", "10.0.0.1:50051", [CARD])
    with pytest.raises(ValueError, match="static"):
        cat.register("static-1", "127.0.0.1:6666", [CARD])
    entry = cat.get("static-1")
    assert entry is not None and entry.static and entry.address == "10.0.0.1:50051"
    assert cat.registered_count() == 0


def test_mirrored_rows_keep_local_health_age_with_the_table_and_never_cover_static_ids() -> None:
    clock = FakeClock()
    cat = Catalog(ttl_s=10, clock=clock, wall_clock=clock)
    cat.add_static("static-1", "10.0.0.1:50051", [CARD])
    assert not cat.mirror("static-1", "h:9", [CARD], t.NodeLoad(), lease_digest=b"x", age_s=0)
    assert cat.mirror("reg-1", "h:1", [CARD], t.NodeLoad(running=2), lease_digest=b"l", age_s=4)
    entry = cat.get("reg-1")
    assert entry is not None and not entry.static and entry.load.running == 2
    assert cat.expires_in(entry) == 6  # seen 4 s ago through another replica
    cat.set_health("reg-1", False)  # this replica's probe failed
    cat.mirror("reg-1", "h:1", [CARD], t.NodeLoad(running=5), lease_digest=b"l", age_s=1)
    assert not entry.healthy and entry.load.running == 5 and cat.expires_in(entry) == 9
    cat.mirror("reg-1", "h:2", [CARD], t.NodeLoad(), lease_digest=b"new", age_s=0)
    moved = cat.get("reg-1")
    assert moved is not None and moved.healthy and moved.address == "h:2"  # a new registration
    clock.now += 1
    started = cat.now()  # a listing read now no longer has reg-1 (deregistered elsewhere)
    clock.now += 1
    cat.register("reg-2", "h:3", [CARD])  # through this replica after the listing was read
    assert cat.forget_registered([], seen_before=started) == ["reg-1"]
    assert [e.node_id for e in cat.entries()] == ["reg-2", "static-1"]


def test_candidates_combine_health_and_availability() -> None:
    cat = Catalog()
    cat.register("a", "h:1", [CARD, t.ModelCard(model_id="other", tier=t.MODEL_TIER_LARGE)])
    cat.register("b", "h:2", [CARD])
    cat.set_health("b", False)
    cands = cat.candidates(available=lambda node: node != "a")
    assert [(c.node_id, c.model, c.healthy) for c in cands] == [
        ("a", "smollm2", False),
        ("a", "other", False),
        ("b", "smollm2", False),
    ]
    assert all(c.healthy for c in Catalog().candidates())


def test_pagination_is_ordered_and_complete() -> None:
    cat = Catalog()
    for i in range(125):
        cat.register(f"n{i:03d}", "h:1", [CARD])
    seen, token, pages = [], "", 0
    while True:
        page, token = cat.page(50, token)
        seen += [e.node_id for e in page]
        pages += 1
        if not token:
            break
    assert pages == 3 and seen == sorted(seen) and len(set(seen)) == 125
    assert len(cat.page(0, "")[0]) == 50
    assert len(cat.page(5000, "")[0]) == 125


@pytest.fixture
async def registry() -> AsyncIterator[tuple[Catalog, registry_pb2_grpc.RegistryServiceStub]]:
    cat = Catalog(ttl_s=10, heartbeat_interval_s=2)
    servicer = RegistryServicer(
        cat, breaker_state=lambda n: OPEN if n == "sick" else 1, access=RegistryAccess.open()
    )
    async with serve_registry(servicer) as (_, stub):
        yield cat, stub


async def test_registry_service_round_trip(
    registry: tuple[Catalog, registry_pb2_grpc.RegistryServiceStub],
) -> None:
    cat, stub = registry
    resp, n1_lease = await register(
        stub, registry_pb2.RegisterRequest(node_id="n1", address="127.0.0.1:9", models=[CARD])
    )
    assert resp.ttl.seconds == 10 and resp.heartbeat_interval.seconds == 2
    _, sick_lease = await register(
        stub, registry_pb2.RegisterRequest(node_id="sick", address="127.0.0.1:8", models=[CARD])
    )
    hb = await stub.Heartbeat(
        registry_pb2.HeartbeatRequest(node_id="n1", load=t.NodeLoad(waiting=2)),
        metadata=with_lease(n1_lease),
    )
    assert hb.known and cat.get("n1").load.waiting == 2  # type: ignore[union-attr]
    assert not (await stub.Heartbeat(registry_pb2.HeartbeatRequest(node_id="ghost"))).known
    page = await stub.ListNodes(registry_pb2.ListNodesRequest(page_size=1))
    assert [n.node_id for n in page.nodes] == ["n1"] and page.next_page_token
    page2 = await stub.ListNodes(registry_pb2.ListNodesRequest(page_token=page.next_page_token))
    sick = page2.nodes[0]
    assert sick.node_id == "sick" and sick.breaker_state == OPEN and not sick.healthy
    assert sick.source == registry_pb2.NODE_SOURCE_REGISTERED and not page2.next_page_token
    await stub.Deregister(
        registry_pb2.DeregisterRequest(node_id="sick"), metadata=with_lease(sick_lease)
    )
    assert len(cat) == 1


async def test_registry_rejects_bad_input_with_field_violations(
    registry: tuple[Catalog, registry_pb2_grpc.RegistryServiceStub],
) -> None:
    _, stub = registry
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Register(registry_pb2.RegisterRequest(node_id="", address="nohost"))
    details = error_details(err.value)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in details.violations} == {"node_id", "address", "models"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListNodes(registry_pb2.ListNodesRequest(page_token="garbage!"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

"""A node's RegistrationLoop against a minimal in-test RegistryService on loopback.

The node runs the fake engine: what is tested is the registration protocol (register,
heartbeat with load, re-register when forgotten, deregister), not a model.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2

from mesh.config import NodeConfig
from mesh.contract.serving import BoundServer, create_server
from mesh.v1 import inference_pb2_grpc, registry_pb2, registry_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.registration import RegistrationLoop
from nodes.runtime import NodeRuntime
from tests.helpers import stream_request, wait_until

REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


class RecordingRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """Just enough of a router's registry: a table, and every call recorded in order."""

    def __init__(self, heartbeat_interval_s: float = 0.05) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self.table: dict[str, registry_pb2.RegisterRequest] = {}
        self.calls: list[tuple[str, Any]] = []

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.RegisterResponse:
        self.calls.append(("Register", request))
        self.table[request.node_id] = request
        interval = duration_pb2.Duration()
        interval.FromNanoseconds(int(self.heartbeat_interval_s * 1e9))
        return registry_pb2.RegisterResponse(
            heartbeat_interval=interval, ttl=duration_pb2.Duration(seconds=5)
        )

    async def Heartbeat(
        self, request: registry_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.HeartbeatResponse:
        self.calls.append(("Heartbeat", request))
        return registry_pb2.HeartbeatResponse(known=request.node_id in self.table)

    async def Deregister(
        self, request: registry_pb2.DeregisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.DeregisterResponse:
        self.calls.append(("Deregister", request))
        self.table.pop(request.node_id, None)
        return registry_pb2.DeregisterResponse()

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def heartbeats(self) -> list[registry_pb2.HeartbeatRequest]:
        return [req for name, req in self.calls if name == "Heartbeat"]


async def start_registry(registry: RecordingRegistry, listen: str = "127.0.0.1:0") -> BoundServer:
    bound = create_server(
        listen,
        [(registry_pb2_grpc.add_RegistryServiceServicer_to_server, registry, REGISTRY_SERVICE)],
    )
    await bound.server.start()
    return bound


@pytest.fixture
async def fake_node() -> AsyncIterator[NodeRuntime]:
    runtime = NodeRuntime(
        NodeConfig(id="reg-node", engine="fake", model="fake-model", max_inflight=7),
        FakeEngine(model_id="fake-model"),
    )
    await runtime.start()
    yield runtime
    await runtime.stop(grace_s=0.5)


@pytest.fixture
async def registry() -> AsyncIterator[tuple[RecordingRegistry, str]]:
    recorder = RecordingRegistry()
    bound = await start_registry(recorder)
    yield recorder, f"127.0.0.1:{bound.port}"
    await bound.server.stop(0)


async def test_register_heartbeat_with_load_then_deregister(
    fake_node: NodeRuntime, registry: tuple[RecordingRegistry, str]
) -> None:
    recorder, router_address = registry
    # The node's own period is long; the router's stated 50 ms must win.
    loop = RegistrationLoop(fake_node.servicer, fake_node.address, router_address, interval_s=30)
    await loop.start()
    try:
        assert await wait_until(lambda: len(recorder.heartbeats()) >= 2, timeout_s=10)
        register = recorder.calls[0][1]
        assert recorder.calls[0][0] == "Register"
        assert register.node_id == "reg-node" and register.address == fake_node.address
        assert [m.model_id for m in register.models] == ["fake-model"]
        assert register.load.max_inflight == 7

        # A request in flight shows up in the next heartbeats' load.
        engine = fake_node.backend
        assert isinstance(engine, FakeEngine)
        engine.script.words_per_answer = 50
        engine.script.delay_between_s = 0.05
        async with grpc.aio.insecure_channel(fake_node.address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            call = stub.GenerateStream(stream_request(max_tokens=50), timeout=30)
            async for _ in call:
                break
            assert await wait_until(
                lambda: any(h.load.running == 1 for h in recorder.heartbeats()), timeout_s=10
            )
            call.cancel()
    finally:
        await loop.stop()
    assert recorder.names()[-1] == "Deregister"
    assert recorder.table == {}
    assert not loop.registered


async def test_registers_again_when_the_router_forgets(
    fake_node: NodeRuntime, registry: tuple[RecordingRegistry, str]
) -> None:
    recorder, router_address = registry
    loop = RegistrationLoop(fake_node.servicer, fake_node.address, router_address, interval_s=30)
    await loop.start()
    try:
        assert await wait_until(lambda: len(recorder.heartbeats()) >= 1, timeout_s=10)
        recorder.table.clear()  # a router restart: the table is gone
        assert await wait_until(lambda: "reg-node" in recorder.table, timeout_s=10)
        assert recorder.names().count("Register") == 2 and loop.registrations == 2
    finally:
        await loop.stop()


async def test_keeps_trying_until_the_router_is_up(fake_node: NodeRuntime) -> None:
    with socket.socket() as probe:  # a free port, closed again: nothing listens there yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = RegistrationLoop(
        fake_node.servicer, fake_node.address, f"127.0.0.1:{port}", interval_s=0.05,
        max_backoff_s=0.2,
    )  # fmt: skip
    await loop.start()
    bound: BoundServer | None = None
    try:
        assert await wait_until(lambda: False, timeout_s=0.3) is False  # let it fail a few times
        assert not loop.registered
        recorder = RecordingRegistry()
        bound = await start_registry(recorder, f"127.0.0.1:{port}")
        assert await wait_until(lambda: "reg-node" in recorder.table, timeout_s=15)
    finally:
        await loop.stop()
        if bound is not None:
            await bound.server.stop(0)


async def test_stop_without_a_router_is_quiet(fake_node: NodeRuntime) -> None:
    loop = RegistrationLoop(fake_node.servicer, fake_node.address, "127.0.0.1:1", interval_s=0.05)
    await loop.start()
    await loop.stop()  # never registered: no Deregister attempt, no error
    assert not loop.registered and loop.registrations == 0

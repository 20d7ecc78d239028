"""A node's RegistrationLoop against a minimal in-test RegistryService on loopback.

The loop tests run the fake engine: what they test is the registration protocol (register,
heartbeat with load, re-register when forgotten, deregister), not a model. The NodeRuntime
tests run the real SmolLM2 on the transformers engine: the node a `mesh node --router` starts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
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
from tests.helpers import assert_real_answer, request, stream_request, wait_until

REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


class RecordingRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """Just enough of a router's registry: a table, and every call recorded in order."""

    def __init__(
        self,
        heartbeat_interval_s: float = 0.05,
        on_deregister: Callable[[], None] | None = None,
    ) -> None:
        # 0 states no interval: the node keeps its own heartbeat_interval_s.
        self.heartbeat_interval_s = heartbeat_interval_s
        self.on_deregister = on_deregister
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
        if self.on_deregister is not None:
            self.on_deregister()
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


# --- NodeRuntime with router_address (real SmolLM2 on the transformers engine) -------------
def _free_port() -> int:
    with socket.socket() as probe:  # a free port, closed again: nothing listens there yet
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _hf_config(node_id: str, router_address: str, **extra: Any) -> NodeConfig:
    return NodeConfig(
        id=node_id,
        engine="transformers",
        model="smollm2-135m-instruct",
        input_price_per_mtok=0.02,
        output_price_per_mtok=0.04,
        max_inflight=5,
        router_address=router_address,
        **extra,
    )


@pytest.mark.model
async def test_runtime_registers_reports_load_and_deregisters_before_draining(
    smollm2_path: Path,
) -> None:
    recorder = RecordingRegistry()
    bound = await start_registry(recorder)
    runtime = NodeRuntime(_hf_config("hf-reg", f"127.0.0.1:{bound.port}"))
    inflight_at_deregister: list[int] = []
    recorder.on_deregister = lambda: inflight_at_deregister.append(
        runtime.servicer.admission.inflight
    )
    stopped = False
    try:
        address = await runtime.start()
        assert await wait_until(lambda: len(recorder.heartbeats()) >= 2, timeout_s=15)
        register = recorder.calls[0][1]
        assert recorder.calls[0][0] == "Register"
        assert register.node_id == "hf-reg" and register.address == address
        card = register.models[0]
        assert card.model_id == "smollm2-135m-instruct" and card.output_price_per_mtok == 0.04
        assert register.load.max_inflight == 5

        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            assert_real_answer(await stub.Generate(request(), timeout=60), node_id="hf-reg")
            # The answer's time to first token reaches the router through the heartbeats.
            assert await wait_until(
                lambda: recorder.heartbeats()[-1].load.ewma_ttft_ms > 0, timeout_s=10
            )

            call = stub.GenerateStream(
                stream_request("Count from one to two hundred.", max_tokens=24), timeout=120
            )
            events = [await call.read()]
            assert await wait_until(
                lambda: recorder.heartbeats()[-1].load.running == 1, timeout_s=10
            )
            # Stop while the stream runs: the router hears goodbye first, then the node drains.
            stopping = asyncio.create_task(runtime.stop(grace_s=60))
            stopped = True
            while (event := await call.read()) is not grpc.aio.EOF:
                events.append(event)
            await stopping
        assert inflight_at_deregister == [1]
        assert recorder.names()[-1] == "Deregister" and recorder.table == {}
        assert events[-1].HasField("summary") and events[-1].summary.usage.output_tokens > 1
        assert await call.code() == grpc.StatusCode.OK
    finally:
        if not stopped:
            await runtime.stop(grace_s=1)
        await bound.server.stop(0)


@pytest.mark.model
async def test_runtime_serves_while_the_router_is_down_and_registers_when_it_comes_up(
    smollm2_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    router_port, node_port = _free_port(), _free_port()
    config = _hf_config(
        "hf-early",
        f"127.0.0.1:{router_port}",
        listen=f"127.0.0.1:{node_port}",
        advertise_address=f"localhost:{node_port}",
        heartbeat_interval_s=0.05,
    )
    runtime = NodeRuntime(config)
    bound: BoundServer | None = None
    caplog.set_level(logging.INFO, logger="nodes.registration")
    try:
        address = await runtime.start()
        loop = runtime.registration
        assert loop is not None
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            assert_real_answer(await stub.Generate(request(), timeout=60), node_id="hf-early")
        assert await wait_until(lambda: loop.consecutive_failures >= 3, timeout_s=15)
        assert not loop.registered

        # The router states no interval here: the node's own 50 ms applies.
        recorder = RecordingRegistry(heartbeat_interval_s=0)
        bound = await start_registry(recorder, f"127.0.0.1:{router_port}")
        assert await wait_until(lambda: len(recorder.heartbeats()) >= 2, timeout_s=20)
        assert recorder.table["hf-early"].address == f"localhost:{node_port}"
        assert loop.consecutive_failures == 0
    finally:
        await runtime.stop(grace_s=1)
        if bound is not None:
            await bound.server.stop(0)
    assert recorder.names()[-1] == "Deregister"
    # Several failed calls, one warning; one line when the router is back.
    messages = [r.getMessage() for r in caplog.records if r.name == "nodes.registration"]
    assert sum("unreachable" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1


async def test_runtime_without_router_address_does_not_register() -> None:
    runtime = NodeRuntime(
        NodeConfig(id="solo", engine="fake", model="fake-model"), FakeEngine(model_id="fake-model")
    )
    await runtime.start()
    try:
        assert runtime.registration is None
    finally:
        await runtime.stop(grace_s=0.5)

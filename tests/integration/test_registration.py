"""A node's RegistrationLoop against a minimal in-test RegistryService on loopback.

The loop tests run the fake engine: what they test is the registration protocol (register,
heartbeat with load, re-register when forgotten, deregister), not a model. The NodeRuntime
tests run the real SmolLM2 on the transformers engine: the node a `mesh node --router` starts.
The registration-token tests run fake-engine nodes against a real RouterRuntime (or its real
RegistryServicer): who gets into the routing table is the mesh's own logic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2

from mesh.config import (
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RegistrySettings,
    RouterConfig,
    RoutingSettings,
    TelemetrySettings,
)
from mesh.contract.node_token import NodeToken, TokenUnavailable
from mesh.contract.serving import BoundServer, create_server
from mesh.router.app import RouterRuntime
from mesh.router.catalog import Catalog
from mesh.router.registry import RegistryServicer, add_registry_service
from mesh.router.registry_auth import RegistryAccess
from mesh.telemetry.setup import setup_telemetry
from mesh.v1 import inference_pb2_grpc, registry_pb2, registry_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.registration import RegistrationLoop
from nodes.runtime import NodeRuntime
from tests.helpers import assert_real_answer, request, stream_request, wait_until
from tests.process import free_port

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


async def test_stop_during_a_register_in_flight_still_deregisters(
    fake_node: NodeRuntime,
) -> None:
    """The router has added the node but its reply is still on the way when the node stops:
    the node lets the call finish, then says goodbye, so the router's table ends empty."""
    added = asyncio.Event()

    class SlowReply(RecordingRegistry):
        async def Register(  # type: ignore[override]
            self, request: registry_pb2.RegisterRequest, context: Any
        ) -> registry_pb2.RegisterResponse:
            reply = await super().Register(request, context)
            added.set()
            await asyncio.sleep(0.5)  # the table has the node; the reply is late
            return reply

    recorder = SlowReply()
    bound = await start_registry(recorder)
    loop = RegistrationLoop(
        fake_node.servicer, fake_node.address, f"127.0.0.1:{bound.port}", interval_s=30
    )
    try:
        await loop.start()
        await asyncio.wait_for(added.wait(), 10)
        assert "reg-node" in recorder.table and not loop.registered
        await loop.stop()
        assert recorder.names() == ["Register", "Deregister"]
        assert recorder.table == {} and not loop.registered
    finally:
        await loop.stop()
        await bound.server.stop(0)


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
    port = free_port()  # nothing listens there yet
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
    router_port, node_port = free_port(), free_port()
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


# --- the registration token (fake engine: who gets into the routing table is under test) ----
TOKEN = "node-token-3c9e1f7a5b2d4e6f"
WRONG = "node-token-0000000000000000"


def _token_file(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    return path


async def _token_router(token_file: Path, listen: str = "127.0.0.1:0") -> RouterRuntime:
    """A real router that wants the token; no guards, cache, ledger or MiniLM (not under test)."""
    router = RouterRuntime(
        RouterConfig(
            listen=listen,
            guards=GuardSettings(enabled=False),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(enabled=False),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
            registry=RegistrySettings(heartbeat_interval_s=0.1, ttl_s=5, token_file=token_file),
        ),
        telemetry=setup_telemetry(
            "router",
            TelemetrySettings(exporters=["memory"], prometheus_listen=None),
            install_global=False,
        ),
    )
    await router.start(listen)
    return router


def _token_node(node_id: str, router: str, **token_source: Any) -> NodeRuntime:
    config = NodeConfig(
        id=node_id,
        engine="fake",
        model=f"{node_id}-model",
        router_address=router,
        heartbeat_interval_s=0.05,
        **token_source,
    )
    return NodeRuntime(config, FakeEngine(model_id=f"{node_id}-model"))


def _registration_lines(caplog: pytest.LogCaptureFixture, node_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "nodes.registration" and node_id in r.getMessage()
    ]


async def test_a_node_with_the_token_joins_and_one_with_a_wrong_token_stays_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_NODE_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    router = await _token_router(_token_file(tmp_path, "router-token", TOKEN))
    good = _token_node("good", router.address, router_token_env="TEST_NODE_TOKEN")
    bad = _token_node(
        "bad", router.address, router_token_file=_token_file(tmp_path, "bad-token", WRONG)
    )
    await good.start()
    await bad.start()
    try:
        assert good.registration is not None and bad.registration is not None
        assert await wait_until(lambda: router.catalog.get("good") is not None, timeout_s=10)
        assert await wait_until(lambda: bad.registration.consecutive_failures >= 3, timeout_s=10)  # type: ignore[union-attr]
        assert [e.node_id for e in router.catalog.entries()] == ["good"]
        assert not bad.registration.registered and bad.registration.failure == "refused"
        assert bad.registration._task is not None and not bad.registration._task.done()

        async with grpc.aio.insecure_channel(router.address) as channel:
            # The registered node gets traffic; the refused one's model is unknown to the router.
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            reply = await stub.Generate(request(model="good-model"), timeout=10)
            assert reply.route.node_id == "good"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Generate(request(model="bad-model"), timeout=10)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            # `mesh nodes` reads the table without a token.
            listed = await registry_pb2_grpc.RegistryServiceStub(channel).ListNodes(  # type: ignore[no-untyped-call]
                registry_pb2.ListNodesRequest(), timeout=5
            )
            assert [n.node_id for n in listed.nodes] == ["good"]
    finally:
        await bad.stop(grace_s=0.5)
        await good.stop(grace_s=0.5)
    assert await wait_until(lambda: len(router.catalog) == 0, timeout_s=5)  # good deregistered
    await router.stop(0)

    # One clear line for the refusal, however many retries; the token is nowhere.
    bad_lines = _registration_lines(caplog, "bad")
    assert sum("refused" in line for line in bad_lines) == 1, bad_lines
    assert "does not accept this node's registration token" in bad_lines[0]
    assert not any("refused" in line for line in _registration_lines(caplog, "good"))
    telemetry = router.telemetry
    assert telemetry is not None and telemetry.memory_exporter is not None
    spans = [span.to_json() for span in telemetry.memory_exporter.get_finished_spans()]
    assert any("RegistryService/Register" in span for span in spans)
    for text in [caplog.text, *spans, repr(bad.registration), repr(bad.config)]:
        assert TOKEN not in text and WRONG not in text


async def test_a_node_without_a_token_says_so_once_per_state_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    caplog.set_level(logging.INFO, logger="nodes.registration")
    port = free_port()
    node = _token_node("tokenless", f"127.0.0.1:{port}")
    await node.start()
    router: RouterRuntime | None = None
    try:
        loop = node.registration
        assert loop is not None
        assert await wait_until(lambda: loop.failure == "unreachable", timeout_s=10)
        # The router comes up, but wants a token this node does not have.
        router = await _token_router(
            _token_file(tmp_path, "router-token", TOKEN), f"127.0.0.1:{port}"
        )
        assert await wait_until(lambda: loop.failure == "refused", timeout_s=15)
        failures = loop.consecutive_failures
        assert await wait_until(lambda: loop.consecutive_failures >= failures + 2, timeout_s=15)
        assert len(router.catalog) == 0
    finally:
        await node.stop(grace_s=0.5)
        if router is not None:
            await router.stop(0)
    lines = _registration_lines(caplog, "tokenless")
    assert len(lines) == 2, lines
    assert "unreachable" in lines[0]
    assert "refused" in lines[1] and "NODE_TOKEN_MISSING" in lines[1] and "has none" in lines[1]


async def test_a_refused_node_is_accepted_once_the_router_takes_its_token(
    fake_node: NodeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nodes.registration")
    catalog = Catalog(ttl_s=5, heartbeat_interval_s=0.05)
    servicer = RegistryServicer(catalog, access=RegistryAccess.with_token(NodeToken(WRONG)))
    bound = create_server("127.0.0.1:0", [(add_registry_service, servicer, REGISTRY_SERVICE)])
    await bound.server.start()
    loop = RegistrationLoop(
        fake_node.servicer,
        fake_node.address,
        f"127.0.0.1:{bound.port}",
        interval_s=0.05,
        token=NodeToken(TOKEN),
        max_backoff_s=0.2,
    )
    await loop.start()
    try:
        assert await wait_until(lambda: loop.consecutive_failures >= 3, timeout_s=10)
        assert catalog.get("reg-node") is None
        # The operator fixes the router.
        servicer.access = RegistryAccess.with_token(NodeToken(TOKEN))
        assert await wait_until(lambda: catalog.get("reg-node") is not None, timeout_s=10)
        assert await wait_until(lambda: loop.heartbeats >= 2, timeout_s=10)
        assert loop.failure is None and loop.consecutive_failures == 0
    finally:
        await loop.stop()
        await bound.server.stop(0)
    assert catalog.get("reg-node") is None  # the Deregister carried the token too
    lines = _registration_lines(caplog, "reg-node")
    assert sum("refused" in line for line in lines) == 1
    assert sum("accepted node reg-node" in line for line in lines) == 1


class _StartCountingEngine(FakeEngine):
    starts = 0

    async def start(self) -> None:
        self.starts += 1


async def test_a_broken_token_file_fails_the_start_before_the_engine(tmp_path: Path) -> None:
    engine = _StartCountingEngine(model_id="m")
    runtime = NodeRuntime(
        NodeConfig(
            id="broken",
            engine="fake",
            model="m",
            router_address="127.0.0.1:1",
            router_token_file=tmp_path / "missing-token",
        ),
        engine,
    )
    with pytest.raises(TokenUnavailable, match="cannot read token file"):
        await runtime.start()
    assert engine.starts == 0 and runtime.address == "" and runtime.registration is None

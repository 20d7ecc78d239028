"""The registration token on the router's RegistryService, over a real grpc.aio server.

Register, Heartbeat and Deregister need `x-mesh-node-token`; ListNodes stays open; without a
token configured everything stays open. Also: where tokens are read from, and that no error,
log line or repr ever shows one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from pydantic import ValidationError

from mesh.config import NodeConfig, RegistrySettings, RouterConfig
from mesh.contract.errors import ERROR_DOMAIN
from mesh.contract.node_token import (
    NODE_TOKEN_HEADER,
    NodeToken,
    TokenUnavailable,
    read_token,
)
from mesh.contract.serving import create_server
from mesh.contract.status import error_details
from mesh.router.catalog import Catalog, RegistryServicer
from mesh.router.registry_auth import NodeTokenCheck, warn_if_registration_open
from mesh.v1 import registry_pb2, registry_pb2_grpc
from mesh.v1 import types_pb2 as t

TOKEN = "reg-token-7f3a9c1e5b2d8f4a"
WRONG = "reg-token-0000000000000000"
CARD = t.ModelCard(model_id="m", tier=t.MODEL_TIER_SMALL)

Stub = registry_pb2_grpc.RegistryServiceStub
Registry = tuple[Catalog, Stub]


async def _serve(token: NodeToken | None) -> AsyncIterator[Registry]:
    catalog = Catalog(ttl_s=10, heartbeat_interval_s=2)
    bound = create_server(
        "127.0.0.1:0",
        [
            (
                registry_pb2_grpc.add_RegistryServiceServicer_to_server,
                RegistryServicer(catalog, token=token),
                "mesh.v1.RegistryService",
            )
        ],
    )
    await bound.server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
        yield catalog, registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
    await bound.server.stop(0)


@pytest.fixture
async def guarded() -> AsyncIterator[Registry]:
    async for registry in _serve(NodeToken(TOKEN)):
        yield registry


@pytest.fixture
async def open_registry() -> AsyncIterator[Registry]:
    async for registry in _serve(None):
        yield registry


def _register(node_id: str = "n1") -> registry_pb2.RegisterRequest:
    return registry_pb2.RegisterRequest(node_id=node_id, address="127.0.0.1:9", models=[CARD])


def _token(value: str) -> list[tuple[str, str]]:
    return [(NODE_TOKEN_HEADER, value)]


async def _refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return info.value


def _writes(stub: Stub, metadata: list[tuple[str, str]] | None) -> list[Awaitable[object]]:
    """Register (of an intruder), Heartbeat and Deregister of n1, with the given metadata."""
    return [
        stub.Register(_register("intruder"), metadata=metadata, timeout=5),
        stub.Heartbeat(
            registry_pb2.HeartbeatRequest(node_id="n1", load=t.NodeLoad(waiting=9)),
            metadata=metadata,
            timeout=5,
        ),
        stub.Deregister(registry_pb2.DeregisterRequest(node_id="n1"), metadata=metadata, timeout=5),
    ]


async def test_writes_without_the_token_are_unauthenticated_with_error_info(
    guarded: Registry,
) -> None:
    catalog, stub = guarded
    calls = [
        *_writes(stub, None),
        *_writes(stub, _token("")),
        # Checked before the request itself: a stranger learns nothing from validation either.
        stub.Register(registry_pb2.RegisterRequest(), timeout=5),
    ]
    for call in calls:
        details = error_details(await _refused(call))
        assert details.reason == "NODE_TOKEN_MISSING" and details.domain == ERROR_DOMAIN
        assert details.metadata == {"header": NODE_TOKEN_HEADER}
        assert not details.violations
    assert len(catalog) == 0


async def test_a_wrong_token_changes_nothing(guarded: Registry) -> None:
    catalog, stub = guarded
    await stub.Register(_register(), metadata=_token(TOKEN), timeout=5)
    for wrong in (WRONG, TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        for call in _writes(stub, _token(wrong)):
            err = await _refused(call)
            details = error_details(err)
            assert details.reason == "NODE_TOKEN_REJECTED"
            shown = f"{details.message} {details.metadata} {err.debug_error_string()}"
            assert wrong not in shown and TOKEN not in shown
    # The intruder is not in the table; n1 is still there, with the load it registered with.
    entry = catalog.get("n1")
    assert [e.node_id for e in catalog.entries()] == ["n1"]
    assert entry is not None and entry.load.waiting == 0


async def test_the_right_token_registers_heartbeats_and_deregisters(guarded: Registry) -> None:
    catalog, stub = guarded
    reply = await stub.Register(_register(), metadata=_token(TOKEN), timeout=5)
    assert reply.ttl.seconds == 10
    beat = await stub.Heartbeat(
        registry_pb2.HeartbeatRequest(node_id="n1", load=t.NodeLoad(running=3)),
        metadata=_token(TOKEN),
        timeout=5,
    )
    entry = catalog.get("n1")
    assert beat.known and entry is not None and entry.load.running == 3
    await stub.Deregister(
        registry_pb2.DeregisterRequest(node_id="n1"), metadata=_token(TOKEN), timeout=5
    )
    assert len(catalog) == 0


async def test_list_nodes_stays_readable_without_a_token(guarded: Registry) -> None:
    _, stub = guarded
    await stub.Register(_register(), metadata=_token(TOKEN), timeout=5)
    page = await stub.ListNodes(registry_pb2.ListNodesRequest(), timeout=5)
    assert [n.node_id for n in page.nodes] == ["n1"]


async def test_without_a_configured_token_registration_is_open(open_registry: Registry) -> None:
    catalog, stub = open_registry
    await stub.Register(_register("a"), timeout=5)
    await stub.Register(_register("b"), metadata=_token(WRONG), timeout=5)  # ignored
    assert (await stub.Heartbeat(registry_pb2.HeartbeatRequest(node_id="a"), timeout=5)).known
    await stub.Deregister(registry_pb2.DeregisterRequest(node_id="b"), timeout=5)
    assert [e.node_id for e in catalog.entries()] == ["a"]


# --- the check and the token sources, without a server -------------------------------------
def test_check_accepts_bytes_and_any_key_case_and_never_shows_the_token() -> None:
    check = NodeTokenCheck(NodeToken(TOKEN))
    check.verify([("X-Mesh-Node-Token", TOKEN.encode())])
    assert check.enabled and TOKEN not in repr(check)
    assert repr(NodeToken(TOKEN)) == "NodeToken(<redacted>)" and TOKEN not in str(NodeToken(TOKEN))
    NodeTokenCheck(None).verify(None)  # open: nothing to check


def test_token_file_wins_and_a_broken_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REG_TOKEN", WRONG)
    good = tmp_path / "token"
    good.write_text(f"  {TOKEN}\n")
    token = read_token("t", env="TEST_REG_TOKEN", file=good, env_required=False)
    assert token == NodeToken(TOKEN)

    problems = {
        "missing": (tmp_path / "nope", "cannot read"),
        "empty": (tmp_path / "empty", "is empty"),
        "short": (tmp_path / "short", "shorter than 16"),
        "spaced": (tmp_path / "spaced", "without whitespace"),
    }
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "short").write_text("abc123")
    (tmp_path / "spaced").write_text("correct horse battery staple")
    for path, message in problems.values():
        with pytest.raises(TokenUnavailable, match=message) as info:
            read_token("t", env=None, file=path, env_required=False)
        assert "abc123" not in str(info.value) and "horse" not in str(info.value)


def test_the_default_variable_is_optional_a_chosen_one_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    monkeypatch.delenv("TEST_REG_TOKEN", raising=False)
    assert RegistrySettings().token() is None
    with pytest.raises(TokenUnavailable, match="TEST_REG_TOKEN is empty or unset"):
        RegistrySettings(token_env="TEST_REG_TOKEN").token()
    monkeypatch.setenv("MESH_REGISTRY_TOKEN", TOKEN)
    assert RegistrySettings().token() == NodeToken(TOKEN)
    assert NodeConfig(id="n").router_token() == NodeToken(TOKEN)
    monkeypatch.setenv("TEST_REG_TOKEN", "tiny-tok")
    with pytest.raises(TokenUnavailable, match="shorter than 16") as info:
        NodeConfig(id="n", router_token_env="TEST_REG_TOKEN").router_token()
    assert "node n" in str(info.value) and "tiny-tok" not in str(info.value)


def test_one_token_source_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        RegistrySettings(token_env="A", token_file=tmp_path / "t")
    with pytest.raises(ValidationError, match="not both"):
        NodeConfig(id="n", router_token_env="A", router_token_file=tmp_path / "t")
    # The default variable beside a file is fine: the file wins.
    assert RegistrySettings(token_file=tmp_path / "t").token_file == tmp_path / "t"


def test_config_dumps_name_sources_never_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_REGISTRY_TOKEN", TOKEN)
    config = RouterConfig(registry=RegistrySettings())
    node = NodeConfig(id="n", router_address="127.0.0.1:50051")
    for shown in (repr(config), config.model_dump_json(), repr(node), node.model_dump_json()):
        assert TOKEN not in shown


def test_open_registration_warns_only_off_loopback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    caplog.set_level(logging.WARNING, logger="mesh.router.registry_auth")
    # Nothing is bound here: the check only reads the listen address.
    assert not warn_if_registration_open("127.0.0.1:50051", RegistrySettings())
    assert not warn_if_registration_open("localhost:50051", RegistrySettings())
    assert warn_if_registration_open("0.0.0.0:50051", RegistrySettings())
    assert warn_if_registration_open("10.1.2.3:50051", RegistrySettings())
    monkeypatch.setenv("MESH_REGISTRY_TOKEN", TOKEN)
    assert not warn_if_registration_open("0.0.0.0:50051", RegistrySettings())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("registration is open" in line for line in lines)

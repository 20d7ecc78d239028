"""The registry's modes and token on the router's RegistryService, over a real grpc.aio server.

Mode token: Register, Heartbeat and Deregister need `x-mesh-node-token`. Mode off (the default
without a token): they are refused with REGISTRATION_DISABLED. Mode open: anyone, loopback
only. ListNodes stays open in every mode. Also: where tokens are read from, how the mode is
resolved, and that no error, log line or repr ever shows a token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from pydantic import ValidationError

from mesh.config import ConfigError, NodeConfig, RegistrySettings, RouterConfig, parse_config
from mesh.contract.errors import ERROR_DOMAIN, Code, MeshError
from mesh.contract.node_token import (
    NODE_TOKEN_HEADER,
    NodeToken,
    TokenUnavailable,
    read_token,
)
from mesh.contract.status import error_details
from mesh.router.catalog import Catalog
from mesh.router.registry import RegistryServicer
from mesh.router.registry_auth import (
    NodeTokenCheck,
    RegistryAccess,
    refuse_open_registration_off_loopback,
)
from mesh.v1 import registry_pb2, registry_pb2_grpc
from mesh.v1 import types_pb2 as t
from tests.registry_client import register, serve_registry, with_lease

TOKEN = "reg-token-7f3a9c1e5b2d8f4a"
WRONG = "reg-token-0000000000000000"
CARD = t.ModelCard(model_id="m", tier=t.MODEL_TIER_SMALL)

Stub = registry_pb2_grpc.RegistryServiceStub
Registry = tuple[Catalog, Stub]


async def _serve(access: RegistryAccess) -> AsyncIterator[Registry]:
    catalog = Catalog(ttl_s=10, heartbeat_interval_s=2)
    async with serve_registry(RegistryServicer(catalog, access=access)) as (_, stub):
        yield catalog, stub


@pytest.fixture
async def guarded() -> AsyncIterator[Registry]:
    async for registry in _serve(RegistryAccess.with_token(NodeToken(TOKEN))):
        yield registry


@pytest.fixture
async def open_registry() -> AsyncIterator[Registry]:
    async for registry in _serve(RegistryAccess.open()):
        yield registry


@pytest.fixture
async def closed_registry() -> AsyncIterator[Registry]:
    async for registry in _serve(RegistryAccess.off()):
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
    _, lease = await register(stub, _register(), _token(TOKEN))
    for wrong in (WRONG, TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        # The lease does not stand in for the token.
        for call in _writes(stub, list(with_lease(lease, _token(wrong)))):
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
    reply, lease = await register(stub, _register(), _token(TOKEN))
    assert reply.ttl.seconds == 10
    beat = await stub.Heartbeat(
        registry_pb2.HeartbeatRequest(node_id="n1", load=t.NodeLoad(running=3)),
        metadata=with_lease(lease, _token(TOKEN)),
        timeout=5,
    )
    entry = catalog.get("n1")
    assert beat.known and entry is not None and entry.load.running == 3
    await stub.Deregister(
        registry_pb2.DeregisterRequest(node_id="n1"),
        metadata=with_lease(lease, _token(TOKEN)),
        timeout=5,
    )
    assert len(catalog) == 0


async def test_list_nodes_stays_readable_without_a_token(guarded: Registry) -> None:
    _, stub = guarded
    await stub.Register(_register(), metadata=_token(TOKEN), timeout=5)
    page = await stub.ListNodes(registry_pb2.ListNodesRequest(), timeout=5)
    assert [n.node_id for n in page.nodes] == ["n1"]


async def test_open_mode_takes_any_caller_and_ignores_tokens(open_registry: Registry) -> None:
    catalog, stub = open_registry
    _, lease_a = await register(stub, _register("a"))
    _, lease_b = await register(stub, _register("b"), _token(WRONG))  # ignored
    beat = await stub.Heartbeat(
        registry_pb2.HeartbeatRequest(node_id="a"), metadata=with_lease(lease_a), timeout=5
    )
    assert beat.known
    await stub.Deregister(
        registry_pb2.DeregisterRequest(node_id="b"), metadata=with_lease(lease_b), timeout=5
    )
    assert [e.node_id for e in catalog.entries()] == ["a"]


async def test_off_mode_refuses_every_write_and_lists(closed_registry: Registry) -> None:
    catalog, stub = closed_registry
    catalog.add_static("static-1", "127.0.0.1:7")
    calls = [*_writes(stub, None), *_writes(stub, _token(TOKEN))]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        details = error_details(info.value)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert details.reason == "REGISTRATION_DISABLED" and details.metadata == {"mode": "off"}
        assert "registration token" in details.message
    page = await stub.ListNodes(registry_pb2.ListNodesRequest(), timeout=5)
    assert [n.node_id for n in page.nodes] == ["static-1"]


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


# --- the mode: resolved from config, and open never off loopback -----------------------------
def test_the_mode_is_off_without_a_token_and_token_with_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    assert RegistrySettings().resolved_mode() == ("off", None)
    assert RegistryAccess.from_settings(RegistrySettings()).mode == "off"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    assert RegistrySettings(token_file=token_file).resolved_mode() == ("token", NodeToken(TOKEN))
    monkeypatch.setenv("MESH_REGISTRY_TOKEN", TOKEN)  # the default variable counts as a source
    assert RegistrySettings().resolved_mode() == ("token", NodeToken(TOKEN))
    # Explicit modes: open and off ignore the default variable; token needs one.
    assert RegistrySettings(mode="open").resolved_mode() == ("open", None)
    assert RegistrySettings(mode="off").resolved_mode() == ("off", None)
    monkeypatch.delenv("MESH_REGISTRY_TOKEN")
    with pytest.raises(TokenUnavailable, match="MESH_REGISTRY_TOKEN is empty or unset"):
        RegistrySettings(mode="token").resolved_mode()


def test_a_token_source_beside_mode_open_or_off_is_a_config_error(tmp_path: Path) -> None:
    for mode in ("open", "off"):
        with pytest.raises(ValidationError, match=f"mode {mode} takes no token"):
            RegistrySettings(mode=mode, token_file=tmp_path / "t")
        with pytest.raises(ValidationError, match=f"mode {mode} takes no token"):
            RegistrySettings(mode=mode, token_env="SOME_VAR")
    with pytest.raises(ValidationError, match="mode"):
        RegistrySettings(mode="anyone")  # type: ignore[arg-type]


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "10.1.2.3:50051", "[::]:50051", "mesh:1"])
def test_open_mode_off_loopback_is_refused_at_load_and_at_start(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"router: .*mode open .* loopback listen address only"):
        parse_config(f"router: {{listen: '{listen}', registry: {{mode: open}}}}")
    # A --listen given at start is checked too, with the same words, before anything binds.
    with pytest.raises(MeshError) as info:
        refuse_open_registration_off_loopback(listen, RegistrySettings(mode="open"))
    assert info.value.code == Code.FAILED_PRECONDITION
    assert info.value.reason == "OPEN_REGISTRATION_OFF_LOOPBACK"
    assert "loopback listen address only" in info.value.message


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:50051", "[::1]:50051"])
def test_open_mode_on_loopback_and_token_mode_anywhere_are_fine(
    listen: str, tmp_path: Path
) -> None:
    config = parse_config(f"router: {{listen: '{listen}', registry: {{mode: open}}}}")
    assert config.router.registry.mode == "open"
    refuse_open_registration_off_loopback(listen, config.router.registry)
    token_file = tmp_path / "t"
    refuse_open_registration_off_loopback("0.0.0.0:1", RegistrySettings(token_file=token_file))
    refuse_open_registration_off_loopback("0.0.0.0:1", RegistrySettings(mode="off"))

"""TLS and mutual TLS between every hop, with real handshakes on loopback.

Certificates come from the mesh's own `mesh certs dev` code (mesh.dev_certs) in temporary
directories: the mesh CA, and a second, foreign CA standing for anyone else. Servers are real
(grpc.aio, uvicorn); nodes run FakeEngine, a deterministic test engine named as such: who may
call whom is the mesh's own logic, not a model's. What a server presents is read from a raw
TLS handshake (the `ssl` module), so rotation is checked on the certificate actually served.
Outcomes are asserted, never timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import openai
import pytest
from cryptography import x509

from mesh.config import (
    CacheSettings,
    ClientTls,
    EstimatorSettings,
    GuardSettings,
    HttpSettings,
    LedgerSettings,
    NodeConfig,
    RegistrySettings,
    RouterConfig,
    RoutingSettings,
    ServerTls,
)
from mesh.contract.errors import MeshError
from mesh.contract.status import error_details
from mesh.contract.tls import PlaintextOffLoopback, TlsUnavailable
from mesh.dev_certs import CertFiles, DevCerts, issue, load_authority, make_dev_certs, spiffe_id
from mesh.router.app import RouterRuntime
from mesh.v1 import inference_pb2, inference_pb2_grpc, registry_pb2, registry_pb2_grpc
from mesh.v1 import types_pb2 as t
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import request, wait_until
from tests.registry_client import register, with_lease

pytestmark = pytest.mark.timeout(120)

MODEL = "tls-model"
REFUSED = grpc.StatusCode.UNAVAILABLE  # a failed handshake: the call never reaches a handler


@dataclass(frozen=True)
class Pki:
    """The mesh's certificates and a foreign CA's, each in its own directory."""

    mesh: DevCerts
    foreign: DevCerts

    @property
    def directory(self) -> Path:
        return self.mesh.ca_file.parent


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(make_dev_certs(tmp_path / "mesh-pki"), make_dev_certs(tmp_path / "foreign-pki"))


def expired_client(pki: Pki) -> CertFiles:
    """A client certificate from the mesh CA whose validity ended yesterday."""
    authority = load_authority(pki.directory)
    assert authority is not None
    now = dt.datetime.now(dt.UTC)
    return issue(
        authority,
        pki.directory,
        "client",
        name="expired-client",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )


def credentials(ca: Path, client: CertFiles | None = None) -> grpc.ChannelCredentials:
    """Raw grpc credentials, as any gRPC client builds them (no checks of the mesh's own)."""
    if client is None:
        return grpc.ssl_channel_credentials(ca.read_bytes())
    return grpc.ssl_channel_credentials(
        ca.read_bytes(), client.key_file.read_bytes(), client.cert_file.read_bytes()
    )


def serial(cert_file: Path) -> int:
    return int(x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number)


def _handshake_serial(address: str, ca: Path, client: CertFiles | None, alpn: str) -> int:
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols([alpn])
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


async def served_serial(
    address: str, ca: Path, client: CertFiles | None = None, *, alpn: str = "h2"
) -> int:
    """The serial number of the certificate a server presents to a new connection now."""
    return await asyncio.to_thread(_handshake_serial, address, ca, client, alpn)


def server_tls(files: CertFiles, client_ca: Path | None) -> ServerTls:
    return ServerTls(cert_file=files.cert_file, key_file=files.key_file, client_ca_file=client_ca)


def fake_node(node_id: str, tls: ServerTls | None, **extra: Any) -> NodeRuntime:
    config = NodeConfig(
        id=node_id,
        engine="fake",
        model=MODEL,
        input_price_per_mtok=0.1,
        output_price_per_mtok=0.2,
        tls=tls,
        **extra,
    )
    return NodeRuntime(config, FakeEngine(model_id=MODEL), health_interval_s=0.2)


def engine(node: NodeRuntime) -> FakeEngine:
    assert isinstance(node.backend, FakeEngine)
    return node.backend


def router_config(**fields: Any) -> RouterConfig:
    """A router with nothing under test switched on (guards, cache, ledger, MiniLM)."""
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "health_interval_s": 0.2,
        "guards": GuardSettings(enabled=False),
        "cache": CacheSettings(enabled=False),
        "ledger": LedgerSettings(enabled=False),
        "routing": RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
    }
    return RouterConfig(**(base | fields))


@contextlib.asynccontextmanager
async def running(*servers: NodeRuntime | RouterRuntime) -> AsyncIterator[None]:
    started: list[NodeRuntime | RouterRuntime] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
        yield
    finally:
        for server in reversed(started):
            await server.stop(0.5)


async def generate(address: str, creds: grpc.ChannelCredentials | None) -> Any:
    """One Generate on a new channel: the reply, or the status code it failed with."""
    channel = (
        grpc.aio.secure_channel(address, creds)
        if creds is not None
        else grpc.aio.insecure_channel(address)
    )
    async with channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        try:
            reply: inference_pb2.GenerateResponse = await stub.Generate(request(), timeout=10)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return reply


# --- 1. a node serving mutual TLS -----------------------------------------------------------------
async def test_a_mutual_tls_node_takes_inference_calls_only_from_mesh_ca_certificates(
    pki: Pki,
) -> None:
    node = fake_node("n1", server_tls(pki.mesh.node, pki.mesh.ca_file))
    async with running(node):
        ca = pki.mesh.ca_file
        reply = await generate(node.address, credentials(ca, pki.mesh.client))
        assert isinstance(reply, inference_pb2.GenerateResponse) and reply.text
        # Plaintext; TLS without a certificate; a certificate from another CA; an expired one.
        assert await generate(node.address, None) == REFUSED
        assert await generate(node.address, credentials(ca)) == REFUSED
        assert await generate(node.address, credentials(ca, pki.foreign.client)) == REFUSED
        assert await generate(node.address, credentials(ca, expired_client(pki))) == REFUSED
        # A client that trusts another CA refuses the node in turn.
        foreign = credentials(pki.foreign.ca_file, pki.foreign.client)
        assert await generate(node.address, foreign) == REFUSED
        assert engine(node).completed == 1  # only the mesh client's call ran


async def test_a_server_refuses_to_start_on_an_expired_or_mismatched_certificate(
    pki: Pki,
) -> None:
    expired = expired_client(pki)  # any expired leaf does: the check is the server's own
    for files, fault in (
        (expired, "expired on"),
        (CertFiles(pki.mesh.node.cert_file, pki.mesh.router.key_file), "does not match key"),
        (CertFiles(pki.directory / "missing.pem", pki.mesh.node.key_file), "cannot read"),
    ):
        node = fake_node("n1", server_tls(files, None))
        with pytest.raises(TlsUnavailable, match=fault) as info:
            await node.start()
        assert "BEGIN" not in str(info.value) and node.address == ""
        await node.stop(0)


# --- 2. rotation without a restart ----------------------------------------------------------------
async def test_rotated_files_reach_new_connections_and_open_ones_keep_working(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client_ca = tmp_path / "client-ca.pem"  # rotated on its own below
    shutil.copy(pki.mesh.ca_file, client_ca)
    node = fake_node("n1", server_tls(pki.mesh.node, client_ca))
    ca = pki.mesh.ca_file
    async with running(node):
        first = serial(pki.mesh.node.cert_file)
        assert await served_serial(node.address, ca, pki.mesh.client) == first
        opened = grpc.aio.secure_channel(node.address, credentials(ca, pki.mesh.client))
        stub = inference_pb2_grpc.InferenceServiceStub(opened)
        await stub.Generate(request(), timeout=10)

        rotated = make_dev_certs(pki.directory)  # same CA, new leaves: `mesh certs dev` again
        assert rotated.ca_reused and serial(rotated.node.cert_file) != first
        assert await served_serial(node.address, ca, rotated.client) == serial(
            rotated.node.cert_file
        )
        await stub.Generate(request(), timeout=10)  # the open connection was left alone
        reply = await generate(node.address, credentials(ca, rotated.client))
        assert isinstance(reply, inference_pb2.GenerateResponse)

        # A rotation caught half-way (a key that is not the certificate's) is not used.
        shutil.copy(pki.mesh.router.key_file, rotated.node.key_file)
        with caplog.at_level(logging.WARNING, logger="mesh.contract.tls"):
            assert await served_serial(node.address, ca, rotated.client) == serial(
                rotated.node.cert_file
            )
        assert "does not match key" in caplog.text and "BEGIN" not in caplog.text

        # Once whole again it is used; and the client CA rotates too: the foreign CA's clients
        # get in, the mesh's no longer.
        healed = make_dev_certs(pki.directory)
        shutil.copy(pki.foreign.ca_file, client_ca)
        assert await served_serial(node.address, ca, pki.foreign.client) == serial(
            healed.node.cert_file
        )
        reply = await generate(node.address, credentials(ca, pki.foreign.client))
        assert isinstance(reply, inference_pb2.GenerateResponse)
        assert await generate(node.address, credentials(ca, healed.client)) == REFUSED
        await opened.close()


# --- 3. router -> node over mutual TLS, end to end ------------------------------------------------
async def test_router_to_node_mutual_tls_end_to_end(pki: Pki) -> None:
    mesh, foreign = pki.mesh, pki.foreign
    good = fake_node("good", server_tls(mesh.node, mesh.ca_file))
    distrustful = fake_node("distrustful", server_tls(mesh.node, foreign.ca_file))
    impostor = fake_node("impostor", server_tls(foreign.node, mesh.ca_file))
    router = RouterRuntime(
        router_config(
            tls=server_tls(mesh.router, mesh.ca_file),
            upstream_tls=ClientTls(
                ca_file=mesh.ca_file, cert_file=mesh.router.cert_file, key_file=mesh.router.key_file
            ),
        )
    )
    async with running(good, distrustful, impostor):
        for node in (good, distrustful, impostor):
            router.add_upstream(node.config.id, node.address)
        async with running(router):
            client = credentials(mesh.ca_file, mesh.client)
            replies = [await generate(router.address, client) for _ in range(6)]
            assert [r.route.node_id for r in replies] == ["good"] * 6
            health = {e.node_id: e.healthy for e in router.catalog.entries()}
            assert health == {"good": True, "distrustful": False, "impostor": False}
            assert [engine(n).completed for n in (good, distrustful, impostor)] == [6, 0, 0]
            assert await generate(router.address, None) == REFUSED


async def test_the_routers_channels_to_nodes_follow_rotated_files(pki: Pki, tmp_path: Path) -> None:
    """The router's own CA, certificate and key rotate (here: to the foreign PKI, so nothing
    old can pass) and its node restarts with the new PKI on the same port: the router's
    channel reconnects with the new files, without a router restart."""
    files = tmp_path / "router-upstream"
    files.mkdir()
    upstream = ClientTls(
        ca_file=files / "ca.pem", cert_file=files / "cert.pem", key_file=files / "key.pem"
    )

    def install(pki_files: DevCerts) -> None:
        shutil.copy(pki_files.ca_file, files / "ca.pem")
        shutil.copy(pki_files.router.cert_file, files / "cert.pem")
        shutil.copy(pki_files.router.key_file, files / "key.pem")

    install(pki.mesh)
    router = RouterRuntime(router_config(upstream_tls=upstream))
    listen = f"127.0.0.1:{_free_port()}"
    node = fake_node("n1", server_tls(pki.mesh.node, pki.mesh.ca_file), listen=listen)
    await node.start()
    router.add_upstream("n1", node.address)
    async with running(router):
        assert (await generate(router.address, None)).route.node_id == "n1"
        await node.stop(0)
        assert await wait_until(lambda: not router.catalog.get("n1").healthy)  # type: ignore[union-attr]
        install(pki.foreign)
        renewed = fake_node("n1", server_tls(pki.foreign.node, pki.foreign.ca_file), listen=listen)
        async with running(renewed):
            assert await wait_until(lambda: router.catalog.get("n1").healthy)  # type: ignore[union-attr]
            reply = await generate(router.address, None)
            assert isinstance(reply, inference_pb2.GenerateResponse)
            assert reply.route.node_id == "n1" and engine(renewed).completed == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- 4. registration over TLS, with the node certificate as the credential ------------------------
async def test_a_node_registers_over_tls_with_its_certificate_and_leases_still_hold(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)  # the certificate is the only key
    mesh = pki.mesh
    router = RouterRuntime(
        router_config(
            tls=server_tls(mesh.router, mesh.ca_file),
            upstream_tls=ClientTls(
                ca_file=mesh.ca_file, cert_file=mesh.router.cert_file, key_file=mesh.router.key_file
            ),
            registry=RegistrySettings(
                node_identities=[spiffe_id("node")], heartbeat_interval_s=0.2, ttl_s=2
            ),
        )
    )
    async with running(router):
        node = fake_node(
            "joined",
            server_tls(mesh.node, mesh.ca_file),
            router_address=router.address,
            heartbeat_interval_s=0.2,
            router_tls=ClientTls(
                ca_file=mesh.ca_file, cert_file=mesh.node.cert_file, key_file=mesh.node.key_file
            ),
        )
        async with running(node):
            assert node.registration is not None
            assert await wait_until(lambda: node.registration.heartbeats >= 2, timeout_s=20)
            entry = router.catalog.get("joined")
            assert entry is not None and not entry.static
            assert await wait_until(lambda: bool(router.catalog.get("joined").healthy))  # type: ignore[union-attr]
            reply = await generate(router.address, credentials(mesh.ca_file, mesh.client))
            assert reply.route.node_id == "joined"

            card = t.ModelCard(model_id=MODEL, tier=t.MODEL_TIER_SMALL)
            hijack = registry_pb2.RegisterRequest(
                node_id="intruder", address="127.0.0.1:9", models=[card]
            )
            # A client certificate of the mesh is not a node certificate.
            async with grpc.aio.secure_channel(
                router.address, credentials(mesh.ca_file, mesh.client)
            ) as channel:
                stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Register(hijack, timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert error_details(info.value).reason == "NODE_CERTIFICATE_REQUIRED"
            # Another holder of a node certificate registers its own id, but cannot touch the
            # node's registration: the lease still decides.
            async with grpc.aio.secure_channel(
                router.address, credentials(mesh.ca_file, mesh.node)
            ) as channel:
                stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
                _, lease = await register(stub, hijack)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Deregister(
                        registry_pb2.DeregisterRequest(node_id="joined"),
                        metadata=with_lease(lease),
                        timeout=5,
                    )
                assert error_details(info.value).reason == "NOT_REGISTRATION_OWNER"
            assert router.catalog.get("joined") is not None


async def test_the_registration_channel_follows_rotated_files(pki: Pki, tmp_path: Path) -> None:
    """The router restarts on the same port with a certificate from another CA, and the node's
    CA file rotates with it: the node registers again over a channel with the new CA."""
    token_file = tmp_path / "token"
    token_file.write_text("tls-registration-token-5c1e9a")
    ca_copy = tmp_path / "router-ca.pem"
    shutil.copy(pki.mesh.ca_file, ca_copy)
    listen = f"127.0.0.1:{_free_port()}"

    def router(pki_files: DevCerts) -> RouterRuntime:
        return RouterRuntime(
            router_config(
                listen=listen,
                tls=server_tls(pki_files.router, None),
                registry=RegistrySettings(token_file=token_file, heartbeat_interval_s=0.2, ttl_s=2),
            )
        )

    first = router(pki.mesh)
    await first.start()
    node = fake_node(
        "n1",
        None,
        router_address=listen,
        heartbeat_interval_s=0.2,
        router_token_file=token_file,
        router_tls=ClientTls(ca_file=ca_copy),
    )
    async with running(node):
        assert await wait_until(lambda: first.catalog.get("n1") is not None, timeout_s=20)
        await first.stop(0)
        shutil.copy(pki.foreign.ca_file, ca_copy)
        second = router(pki.foreign)
        async with running(second):
            assert await wait_until(lambda: second.catalog.get("n1") is not None, timeout_s=30)


async def test_a_plaintext_node_cannot_register_with_a_tls_router(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    mesh = pki.mesh
    router = RouterRuntime(
        router_config(
            tls=server_tls(mesh.router, mesh.ca_file),
            registry=RegistrySettings(node_identities=[spiffe_id("node")]),
        )
    )
    async with running(router):
        node = fake_node("plain", None, router_address=router.address, heartbeat_interval_s=0.2)
        async with running(node):
            assert node.registration is not None
            assert await wait_until(lambda: node.registration.consecutive_failures >= 2)
            assert (
                node.registration.failure == "unreachable" and router.catalog.get("plain") is None
            )


# --- 5. the HTTP front over TLS, with the openai SDK ----------------------------------------------
def _http_client(ca: Path, client: CertFiles | None) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    return httpx.AsyncClient(verify=context)


async def _chat(base_url: str, http_client: httpx.AsyncClient) -> str | type[Exception]:
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="unused", max_retries=0, http_client=http_client
    )
    try:
        reply = await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "one two three"}], max_tokens=3
        )
    except openai.APIConnectionError:
        return openai.APIConnectionError
    finally:
        await client.close()
    return reply.choices[0].message.content or ""


async def test_the_http_front_serves_mutual_tls_to_the_openai_sdk_and_rotates(pki: Pki) -> None:
    mesh = pki.mesh
    node = fake_node("n1", None)
    router = RouterRuntime(
        router_config(
            http=HttpSettings(listen="127.0.0.1:0", tls=server_tls(mesh.router, mesh.ca_file))
        )
    )
    async with running(node):
        router.add_upstream("n1", node.address)
        async with running(router):
            assert router.http is not None
            address = router.http.address
            https = f"https://{address}/v1"
            assert await _chat(https, _http_client(mesh.ca_file, mesh.client)) == "one two three"
            refused = openai.APIConnectionError
            assert await _chat(f"http://{address}/v1", httpx.AsyncClient()) is refused
            assert await _chat(https, _http_client(mesh.ca_file, None)) is refused
            assert await _chat(https, _http_client(mesh.ca_file, pki.foreign.client)) is refused
            assert await _chat(https, _http_client(mesh.ca_file, expired_client(pki))) is refused
            assert engine(node).completed == 1

            before = serial(mesh.router.cert_file)
            assert await served_serial(address, mesh.ca_file, mesh.client, alpn="http/1.1") == (
                before
            )
            rotated = make_dev_certs(pki.directory)
            now = await served_serial(address, mesh.ca_file, rotated.client, alpn="http/1.1")
            assert now == serial(rotated.router.cert_file) != before
            assert await _chat(https, _http_client(mesh.ca_file, rotated.client)) == (
                "one two three"
            )


# --- 6. plaintext off loopback is refused at start ------------------------------------------------
async def test_plaintext_off_loopback_is_refused_before_anything_binds(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    router = RouterRuntime(router_config())
    with pytest.raises(PlaintextOffLoopback) as info:
        await router.start("0.0.0.0:0")
    assert info.value.reason == "PLAINTEXT_OFF_LOOPBACK" and router.address == ""
    assert "router.insecure: true" in str(info.value)
    await router.stop(0)

    exposed_http = RouterRuntime(router_config(http=HttpSettings(listen="0.0.0.0:0")))
    with pytest.raises(
        PlaintextOffLoopback, match=re.escape("HTTP front would listen on 0.0.0.0:0")
    ):
        await exposed_http.start()
    assert exposed_http.address == ""
    await exposed_http.stop(0)

    node = fake_node("exposed", None, listen="0.0.0.0:0")
    with pytest.raises(
        MeshError, match=re.escape("node exposed would listen on 0.0.0.0:0")
    ) as refused:
        await node.start()
    assert refused.value.reason == "PLAINTEXT_OFF_LOOPBACK" and node.address == ""
    await node.stop(0)

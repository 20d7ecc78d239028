"""Server wiring every mesh process shares: options, health, reflection, binding.

`create_server` only builds and binds (tests bind port 0 and read the port back); callers
start and stop it. Every server gets grpc.health.v1 and reflection (grpc.reflection.v1 and
v1alpha), and refuses request bytes that do not decode with INVALID_ARGUMENT
(mesh.contract.undecodable). With `tls` it serves TLS, or mutual TLS with a client CA, from
files it re-reads when they change (mesh.contract.tls).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from mesh.config import DEFAULT_MAX_MESSAGE_BYTES, ServerTls, is_loopback
from mesh.contract.reflection import enable_reflection
from mesh.contract.tls import server_credentials
from mesh.contract.undecodable import UndecodableRequests, install_log_filter

log = logging.getLogger(__name__)


def server_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    return [
        # Requests above this get RESOURCE_EXHAUSTED from grpc itself, before any handler runs.
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Ping idle clients every 30 s so dead peers are noticed on long-lived channels;
        # a frozen peer is still only caught by deadlines (STACK.md), hence router timeouts.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # Accept client pings as often as every 10 s without calling them abusive.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # One process per port: never silently share a port with another server.
        ("grpc.so_reuseport", 0),
    ]


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Reconnect quickly after a node restarts instead of backing off for minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


@dataclass
class BoundServer:
    """A built server, its bound port and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    service_names: tuple[str, ...]

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        for name in self.service_names:
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, str]


def create_server(
    listen: str,
    registrations: Sequence[Registration],
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    tls: ServerTls | None = None,
    what: str = "server",
) -> BoundServer:
    """Build a grpc.aio server with the given (add_fn, servicer, full service name) triples.

    `tls`: serve TLS (mutual with a client CA); its files are read now, so TlsUnavailable
    names a missing or broken one before anything binds. `what` names the server in messages.
    """
    credentials = server_credentials(tls, what) if tls is not None else None
    if credentials is None and not is_loopback(listen):
        log.warning("%s listening in plaintext on %s, reachable from other machines", what, listen)
    install_log_filter()
    server = grpc.aio.server(
        options=server_options(max_message_bytes),
        # Outermost: an undecodable request is refused before any interceptor reads it.
        interceptors=[UndecodableRequests(), *interceptors],
    )
    names = []
    for add, servicer, name in registrations:
        add(servicer, server)
        names.append(name)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    enable_reflection(server, (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
    try:
        if credentials is not None:
            port = server.add_secure_port(listen, credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:  # grpc's "Failed to bind to address ..." (older versions return 0)
        port = 0
    if port == 0:
        raise OSError(
            f"{what} could not listen on {listen}: the port is taken or the address is not "
            "this machine's"
        )
    return BoundServer(server=server, port=port, health=health, service_names=tuple(names))


def bound_address(listen: str, port: int) -> str:
    """host:port with the real port (listen may say port 0)."""
    host = listen.rpartition(":")[0]
    return f"{host}:{port}"

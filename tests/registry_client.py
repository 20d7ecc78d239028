"""A registry client for tests: Register and keep the lease, as nodes.registration does.

Also serves the router's real RegistryServicer alone on loopback, for tests that need the
registry but not a whole router.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import grpc.aio

from mesh.contract.registration import LEASE_HEADER
from mesh.contract.serving import create_server
from mesh.router.registry import REGISTRY_SERVICE, RegistryServicer, add_registry_service
from mesh.v1 import registry_pb2, registry_pb2_grpc

Metadata = Sequence[tuple[str, str]]


async def register(
    stub: registry_pb2_grpc.RegistryServiceStub,
    request: registry_pb2.RegisterRequest,
    metadata: Metadata = (),
) -> tuple[registry_pb2.RegisterResponse, str]:
    """Register; returns the reply and the registration lease the router issued."""
    call = stub.Register(request, metadata=tuple(metadata), timeout=5)
    reply = await call
    trailing = await call.trailing_metadata()
    lease = next(v for k, v in trailing or () if k == LEASE_HEADER)
    assert isinstance(lease, str) and len(lease) >= 32
    return reply, lease


def with_lease(lease: str, metadata: Metadata = ()) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a registration lease (and whatever else, e.g. the token)."""
    return (*metadata, (LEASE_HEADER, lease))


@asynccontextmanager
async def serve_registry(
    servicer: RegistryServicer,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> AsyncIterator[tuple[str, registry_pb2_grpc.RegistryServiceStub]]:
    """The servicer on 127.0.0.1:<free port>, as the router serves it; yields address and stub."""
    bound = create_server(
        "127.0.0.1:0",
        [(add_registry_service, servicer, REGISTRY_SERVICE)],
        interceptors=interceptors,
    )
    await bound.server.start()
    address = f"127.0.0.1:{bound.port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield address, registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await bound.server.stop(0)

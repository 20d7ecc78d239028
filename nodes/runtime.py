"""Run a node in the current event loop: engine start, server, health, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mesh.config import NodeConfig
from mesh.contract.errors import MeshError
from mesh.contract.node_token import NodeToken
from mesh.contract.serving import BoundServer, bound_address, create_server
from mesh.contract.tls import (
    ChannelCredentialsSource,
    check_server_files,
    refuse_plaintext_off_loopback,
)
from mesh.telemetry.setup import Telemetry
from mesh.v1 import inference_pb2, inference_pb2_grpc
from nodes.engines import create_backend
from nodes.engines.base import InferenceBackend
from nodes.registration import RegistrationLoop
from nodes.server import NodeServicer

log = logging.getLogger(__name__)
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


ENGINE_HEALTH_INTERVAL_S = 2.0
"""How often a node checks its engine and mirrors the answer into grpc.health.v1."""


class NodeRuntime:
    """One inference node: starts the engine, then serves, then joins the router's registry.

    It stops in the reverse order: leaving the registry first means the router stops sending
    new work before the server drains what is in flight.
    """

    def __init__(
        self,
        config: NodeConfig,
        backend: InferenceBackend | None = None,
        *,
        health_interval_s: float = ENGINE_HEALTH_INTERVAL_S,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.backend = backend or create_backend(config)
        self.servicer = NodeServicer(config, self.backend, telemetry=telemetry)
        self._health_interval_s = health_interval_s
        self._telemetry = telemetry
        self._bound: BoundServer | None = None
        self._health_task: asyncio.Task[None] | None = None
        self.registration: RegistrationLoop | None = None
        self.address = ""

    async def start(self) -> str:
        """Load the model and start serving; returns the bound host:port.

        Everything that can be wrong with the config is found first, before any model loads or
        port opens: plaintext off loopback without `insecure` (PlaintextOffLoopback), a broken
        token source (TokenUnavailable), a missing or broken TLS file (TlsUnavailable).
        """
        config = self.config
        what = f"node {config.id}"
        refuse_plaintext_off_loopback(what, config.listen, config.tls, insecure=config.insecure)
        token = config.router_token() if config.router_address else None
        if config.tls is not None:
            check_server_files(config.tls, what)
        credentials = None
        if config.router_address and config.router_tls is not None:
            credentials = ChannelCredentialsSource(config.router_tls, f"{what} registration")
            credentials.load()
        await self.backend.start()
        self._bound = create_server(
            self.config.listen,
            [
                (
                    inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                    self.servicer,
                    INFERENCE_SERVICE,
                )
            ],
            interceptors=self._telemetry.server_interceptors() if self._telemetry else (),
            tls=config.tls,
            what=what,
        )
        await self._bound.server.start()
        self.address = bound_address(self.config.listen, self._bound.port)
        await self._bound.set_serving(True)
        self._health_task = asyncio.create_task(
            self._watch_health(), name=f"health-{self.config.id}"
        )
        log.info(
            "node %s serving %s on %s", self.config.id, self.backend.info.model_id, self.address
        )
        await self._start_registration(token, credentials)
        return self.address

    async def _start_registration(
        self, token: NodeToken | None, credentials: ChannelCredentialsSource | None
    ) -> None:
        """Announce the node when a router is configured; never waits for the router."""
        if not self.config.router_address:
            return
        self.registration = RegistrationLoop(
            self.servicer,
            self.config.advertise_address or self.address,
            self.config.router_address,
            self.config.heartbeat_interval_s,
            token=token,
            credentials=credentials,
        )
        await self.registration.start()

    async def _watch_health(self) -> None:
        """Mirror engine health into grpc.health.v1 so routers stop sending to a dead engine."""
        assert self._bound is not None
        serving = True
        while True:
            await asyncio.sleep(self._health_interval_s)
            try:
                await self.backend.check_health()
                healthy = True
            except MeshError:
                healthy = False
            if healthy != serving:
                serving = healthy
                log.warning("node %s engine healthy=%s", self.config.id, healthy)
                await self._bound.set_serving(healthy)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Leave the registry, stop accepting, let in-flight requests finish, stop the engine."""
        if self.registration is not None:
            await self.registration.stop()
            self.registration = None
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        if self._bound is not None:
            await self._bound.stop(grace_s)
        await self.backend.close()

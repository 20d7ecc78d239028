"""The embedded mesh behind `mesh up` and the demo: nodes, bridges and a router in one process.

Bridges come from mesh.yaml (`bridges:`) and from the caller (the demo's stand-in); both are
static upstreams of the embedded router, as nodes are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mesh.config import BridgeConfig, MeshConfig, MissingApiKey
from mesh.router.app import RouterRuntime
from mesh.router.exposure import refuse_plaintext_router
from mesh.router.registry_auth import refuse_open_registration_off_loopback
from mesh.telemetry.setup import Telemetry
from nodes.runtime import NodeRuntime

if TYPE_CHECKING:
    from nodes.bridges.runtime import BridgeRuntime

log = logging.getLogger(__name__)


class BridgeSetupError(ValueError):
    """A bridge that cannot be built (no price for its model, an id taken twice); names it."""


class EmbeddedMesh:
    """Starts every node of the config, then bridge nodes, then a router over all of them.

    `start` runs the three phases in order; a caller that must put something between them
    (the demo starts a local stand-in API after the engines) calls the phases itself.
    """

    def __init__(
        self,
        config: MeshConfig,
        *,
        listen: str | None = None,
        telemetry: Telemetry | None = None,
        bridges: Sequence[BridgeConfig] = (),
    ) -> None:
        self.config = config
        self.listen = listen or config.router.listen
        # Before any engine loads: `--listen 0.0.0.0:…` with an open registry, or in plaintext
        # without a registration token, fails at once.
        refuse_open_registration_off_loopback(self.listen, config.router.registry)
        refuse_plaintext_router(config.router, self.listen)
        self.nodes = [NodeRuntime(node, telemetry=telemetry) for node in config.nodes]
        self.bridge_configs: list[BridgeConfig] = [*config.bridges, *bridges]
        self.bridges: list[BridgeRuntime] = []
        if self.bridge_configs:
            self.bridges = _bridge_runtimes(self.bridge_configs, config, telemetry)
        self.router = RouterRuntime(config.router, telemetry=telemetry)
        self.address = ""
        self._started: list[NodeRuntime] = []

    def check_bridge_keys(self) -> None:
        """Read every bridge's API key now, so a missing one fails before any engine loads.

        Raises MissingApiKey naming the bridge and the variable or file, never a key value.
        """
        for bridge in self.bridge_configs:
            try:
                bridge.read_api_key()
            except MissingApiKey as exc:
                raise MissingApiKey(f"bridge {bridge.id}: {exc}") from None

    async def start(self) -> str:
        """Start nodes (engines load in turn), bridges, then the router; returns its address."""
        self.check_bridge_keys()
        await self.start_nodes()
        await self.start_bridges()
        return await self.start_router()

    async def _start_each(self, runtimes: Sequence[NodeRuntime]) -> None:
        try:
            for runtime in runtimes:
                await runtime.start()
                self._started.append(runtime)
                self.router.add_upstream(runtime.config.id, runtime.address)
        except BaseException:
            await self._stop_started(grace_s=0)
            raise

    async def start_nodes(self) -> None:
        await self._start_each(self.nodes)

    async def start_bridges(self) -> None:
        await self._start_each(self.bridges)

    async def start_router(self) -> str:
        try:
            self.address = await self.router.start(self.listen)
        except BaseException:
            await self._stop_started(grace_s=0)
            raise
        return self.address

    async def _stop_started(self, grace_s: float) -> None:
        started, self._started = self._started, []
        await asyncio.gather(*(n.stop(grace_s=grace_s) for n in started), return_exceptions=True)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Router first (stop taking requests), then bridges, then the nodes finish their work."""
        await self.router.stop(grace_s)
        await asyncio.gather(*(b.stop(grace_s) for b in self.bridges), return_exceptions=True)
        await asyncio.gather(*(n.stop(grace_s) for n in self.nodes), return_exceptions=True)


def _bridge_runtimes(
    bridges: Sequence[BridgeConfig], config: MeshConfig, telemetry: Telemetry | None
) -> list[BridgeRuntime]:
    """One runtime per bridge; an id taken twice or a model without a price: BridgeSetupError."""
    from nodes.bridges.runtime import BridgeRuntime

    taken = {n.id for n in config.nodes} | {u.id for u in config.router.upstreams}
    runtimes = []
    for bridge in bridges:
        if bridge.id in taken:
            raise BridgeSetupError(f"bridge {bridge.id}: the id is already taken by another node")
        taken.add(bridge.id)
        try:
            runtimes.append(BridgeRuntime(bridge, telemetry=telemetry))
        except ValueError as exc:  # no price for the model, or an unusable price table
            raise BridgeSetupError(f"bridge {bridge.id}: {exc}") from None
    return runtimes

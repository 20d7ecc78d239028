"""The embedded mesh behind `mesh up` and the demo: nodes, bridges and a router in one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mesh.config import MeshConfig
from mesh.router.app import RouterRuntime
from mesh.telemetry.setup import Telemetry
from nodes.runtime import NodeRuntime

if TYPE_CHECKING:
    from nodes.bridges.config import BridgeConfig
    from nodes.bridges.runtime import BridgeRuntime

log = logging.getLogger(__name__)


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
        self.nodes = [NodeRuntime(node, telemetry=telemetry) for node in config.nodes]
        self.bridges: list[BridgeRuntime] = []
        if bridges:
            from nodes.bridges.runtime import BridgeRuntime

            self.bridges = [BridgeRuntime(b, telemetry=telemetry) for b in bridges]
        self.router = RouterRuntime(config.router, telemetry=telemetry)
        self.address = ""
        self._started: list[NodeRuntime] = []

    async def start(self) -> str:
        """Start nodes (engines load in turn), bridges, then the router; returns its address."""
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

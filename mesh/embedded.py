"""The embedded mesh behind `mesh up` and the demo: nodes and a router in one process."""

from __future__ import annotations

import asyncio
import logging

from mesh.config import MeshConfig
from mesh.router.app import RouterRuntime
from mesh.telemetry.setup import Telemetry
from nodes.runtime import NodeRuntime

log = logging.getLogger(__name__)


class EmbeddedMesh:
    """Starts every node of the config, then a router that forwards to them (and upstreams)."""

    def __init__(
        self, config: MeshConfig, *, listen: str | None = None, telemetry: Telemetry | None = None
    ) -> None:
        self.config = config
        self.listen = listen or config.router.listen
        self.nodes = [NodeRuntime(node, telemetry=telemetry) for node in config.nodes]
        self.router = RouterRuntime(config.router, telemetry=telemetry)
        self.address = ""

    async def start(self) -> str:
        """Start nodes (engines load in turn), then the router; returns the router address."""
        started: list[NodeRuntime] = []
        try:
            for node in self.nodes:
                await node.start()
                started.append(node)
                self.router.add_upstream(node.config.id, node.address)
            self.address = await self.router.start(self.listen)
        except BaseException:
            await asyncio.gather(*(n.stop(grace_s=0) for n in started), return_exceptions=True)
            raise
        return self.address

    async def stop(self, grace_s: float = 5.0) -> None:
        """Router first (stop taking requests), then the nodes finish what is in flight."""
        await self.router.stop(grace_s)
        await asyncio.gather(*(n.stop(grace_s) for n in self.nodes), return_exceptions=True)

"""Connections to the nodes a router forwards to, and what it last learned about each.

One long-lived channel per node. A background probe (ListModels, which also returns load)
keeps each node's model cards and health fresh; a failed call marks a node unhealthy at once
so the next request does not wait for the probe to notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc
import grpc.aio

from mesh.contract.serving import channel_options
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

log = logging.getLogger(__name__)


@dataclass
class Upstream:
    """One node as the router sees it."""

    node_id: str
    address: str
    channel: grpc.aio.Channel
    stub: inference_pb2_grpc.InferenceServiceStub
    cards: list[types_pb2.ModelCard] = field(default_factory=list)
    load: types_pb2.NodeLoad = field(default_factory=types_pb2.NodeLoad)
    healthy: bool = False
    last_seen: float = 0.0
    static: bool = True

    def serves(self, model: str) -> types_pb2.ModelCard | None:
        """The card of `model` (id or alias) on this node, if it serves it."""
        for card in self.cards:
            if model == card.model_id or model in card.aliases:
                return card
        return None


class UpstreamPool:
    """All upstream nodes, probed in the background."""

    def __init__(
        self,
        *,
        probe_interval_s: float = 2.0,
        probe_timeout_s: float = 1.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        client_interceptors: list[grpc.aio.ClientInterceptor] | None = None,
    ) -> None:
        self._nodes: dict[str, Upstream] = {}
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._max_message_bytes = max_message_bytes
        self._interceptors = client_interceptors or []
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()

    def add(self, node_id: str, address: str, *, static: bool = True) -> Upstream:
        """Add (or re-point) a node; the channel connects lazily."""
        existing = self._nodes.get(node_id)
        if existing is not None and existing.address == address:
            existing.static = existing.static or static
            return existing
        if existing is not None:
            self._closing.add(asyncio.ensure_future(existing.channel.close()))
        channel = grpc.aio.insecure_channel(
            address,
            options=channel_options(self._max_message_bytes),
            interceptors=self._interceptors or None,
        )
        node = Upstream(
            node_id=node_id,
            address=address,
            channel=channel,
            stub=inference_pb2_grpc.InferenceServiceStub(channel),
            static=static,
        )
        self._nodes[node_id] = node
        return node

    async def remove(self, node_id: str) -> None:
        node = self._nodes.pop(node_id, None)
        if node is not None:
            await node.channel.close()

    def nodes(self) -> list[Upstream]:
        """All nodes in a stable order (by id)."""
        return [self._nodes[k] for k in sorted(self._nodes)]

    def get(self, node_id: str) -> Upstream | None:
        return self._nodes.get(node_id)

    def mark_failed(self, node: Upstream) -> None:
        if node.healthy:
            log.warning("upstream %s (%s) marked unhealthy", node.node_id, node.address)
        node.healthy = False

    async def probe(self, node: Upstream) -> bool:
        """Refresh one node's cards and load; returns its health."""
        try:
            reply: inference_pb2.ListModelsResponse = await node.stub.ListModels(
                inference_pb2.ListModelsRequest(), timeout=self._probe_timeout_s
            )
        except grpc.aio.AioRpcError as err:
            if node.healthy:
                log.warning("upstream %s probe failed: %s", node.node_id, err.code().name)
            node.healthy = False
            return False
        node.cards = list(reply.models)
        node.load = reply.load
        node.last_seen = time.time()
        if not node.healthy:
            log.info("upstream %s (%s) is healthy", node.node_id, node.address)
        node.healthy = True
        return True

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(n) for n in self.nodes()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._probe_loop(), name="upstream-probe")

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await self.probe_all()
            except Exception:  # a probe bug must never stop probing
                log.exception("upstream probe loop error")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(n.channel.close() for n in self._nodes.values()))
        self._nodes.clear()

"""Connections to the nodes in the routing table, and the probe that keeps the table fresh.

One long-lived channel per node, created on first use and re-pointed when a node re-registers
at another address. A background probe (ListModels, which also returns load) refreshes every
node's health and load, and the model cards of static nodes (registered nodes send theirs);
a failed call marks a node unhealthy at once so the next request does not wait for the probe.

With `credentials` (router.upstream_tls) the channels are TLS: the node's certificate is
verified against the mesh CA and the router presents its own. Channels take credentials when
they are opened, so when the files rotate a node's channel is replaced on its next use; calls
already on the old channel finish there (it closes once they have, or after RETIRE_GRACE_S).

A frozen node (SIGSTOPped, a hung event loop) accepts connections and never answers, and gRPC
keepalive took 25-45 s to notice one (STACK.md). So every call waiting on a node (for its
reply, its first event or its next one) is tracked per node, and when the node misses
FROZEN_AFTER_MISSES probes in a row those calls are cancelled and marked given up: before the
commit point the router tries the next candidate, after it the stream ends UNAVAILABLE. A unary
call commits only with its reply, so this, not a time limit on the whole generation, is what
rescues it.

A busy node is not a frozen one: a probe that times out while a call to the same node got its
reply or an event leaves the node's health as it was and counts no miss. Without this, a node
whose event loop lagged past the probe timeout under load (32 streams at once on CI's two cores)
was marked down while it was streaming, and with both nodes so marked the router refused every
request UNAVAILABLE for a probe interval. Nor is one late probe a frozen node: the host of the
nodes (or of the router) can stall a second and more with no call in flight to vouch for them
(CI saw 1.8 s with 32 callers abandoning streams on two cores: both nodes went down at once and a
request was refused). So a late probe takes a node out of the table only when it is the
FROZEN_AFTER_MISSES-th in a row, together with the give-up above; a refused connection or any
other probe error takes it out at once, as a failed call does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from mesh.config import DEFAULT_MAX_MESSAGE_BYTES
from mesh.contract.serving import channel_options
from mesh.contract.tls import ChannelCredentialsSource, open_channel
from mesh.router import upstream_calls
from mesh.router.catalog import Catalog, NodeEntry
from mesh.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

ProbeListener = Callable[[Catalog], None]
FROZEN_AFTER_MISSES = 2  # probe timeouts in a row before a node is out and its calls given up
# How long calls on a channel replaced by rotated credentials may still run (a long stream).
RETIRE_GRACE_S = 3600.0


class UpstreamPool:
    """Channels keyed by node id, over the nodes a Catalog lists."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        probe_interval_s: float = 2.0,
        probe_timeout_s: float = 1.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        client_interceptors: list[grpc.aio.ClientInterceptor] | None = None,
        credentials: ChannelCredentialsSource | None = None,
    ) -> None:
        self.catalog = catalog
        self.credentials = credentials
        # node id -> (address, credentials generation, channel)
        self._channels: dict[str, tuple[str, int, grpc.aio.Channel]] = {}
        # One stub per open channel: building one makes a multicallable per method (~20 µs
        # a call at c1, 11 % of the forward stage's own CPU in a py-spy profile).
        self._stubs: dict[str, inference_pb2_grpc.InferenceServiceStub] = {}
        self._retiring: set[grpc.aio.Channel] = set()
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._max_message_bytes = max_message_bytes
        self._interceptors = client_interceptors or []
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.after_probe: list[ProbeListener] = []
        self._pending: dict[str, set[Any]] = {}  # node id -> calls not yet committed
        self._abandoned: set[Any] = set()
        self._misses: dict[str, int] = {}
        self._heard: dict[str, float] = {}  # node id -> when a call last got something from it

    def add_static(self, node_id: str, address: str) -> None:
        """A node from config (or a test); its cards arrive with the first probe."""
        self.catalog.add_static(node_id, address)
        self.catalog.set_health(node_id, False)  # unknown until probed

    def stub(self, node_id: str, address: str) -> inference_pb2_grpc.InferenceServiceStub:
        """The stub for a node, (re)connecting when its address changed."""
        generation, credentials = (
            self.credentials.current() if self.credentials is not None else (0, None)
        )
        known = self._channels.get(node_id)
        if known is not None and known[:2] == (address, generation):
            stub = self._stubs.get(node_id)
            if stub is not None:
                return stub
            channel = known[2]
        else:
            if known is not None:
                # A node that moved takes its calls with it; rotated credentials do not.
                self._close_later(known[2], retire=known[0] == address)
            channel = open_channel(
                address,
                credentials,
                options=[
                    *channel_options(self._max_message_bytes),
                    *(self.credentials.options() if self.credentials is not None else []),
                ],
                interceptors=self._interceptors or None,
            )
            self._channels[node_id] = (address, generation, channel)
        stub = self._stubs[node_id] = inference_pb2_grpc.InferenceServiceStub(channel)
        return stub

    def _close_later(self, channel: grpc.aio.Channel, *, retire: bool = False) -> None:
        """Close a channel in the background: at once, or (`retire`) once its calls ended."""
        if retire:
            self._retiring.add(channel)
        task = asyncio.ensure_future(channel.close(RETIRE_GRACE_S if retire else None))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(lambda _: self._retiring.discard(channel))

    def mark_failed(self, node_id: str) -> None:
        """A call found the node unreachable: stop routing to it until it answers again."""
        entry = self.catalog.get(node_id)
        if entry is not None and entry.healthy:
            log.warning("upstream %s (%s) marked unhealthy", node_id, entry.address)
        self.catalog.set_health(node_id, False)

    def heard_from(self, node_id: str) -> None:
        """A call to the node just got its reply or an event: the node is alive, however late
        its probe answers."""
        self._heard[node_id] = time.monotonic()

    # -- calls not yet committed -------------------------------------------------------------
    def track(self, node_id: str, call: Any) -> None:
        """A call sent to `node_id` that is waiting on it (a reply, a first or next event)."""
        self._pending.setdefault(node_id, set()).add(call)

    def untrack(self, node_id: str, call: Any) -> bool:
        """Forget a call; True when it was given up because its node froze."""
        pending = self._pending.get(node_id)
        if pending is not None:
            pending.discard(call)
        if call in self._abandoned:
            self._abandoned.discard(call)
            return True
        return False

    def _give_up(self, node_id: str) -> None:
        calls = self._pending.pop(node_id, set())
        if calls:
            log.warning("upstream %s froze: giving up %d pending call(s)", node_id, len(calls))
        for call in calls:
            self._abandoned.add(call)
            upstream_calls.cancel(call)

    # -- probes -------------------------------------------------------------------------------
    async def probe(self, entry: NodeEntry) -> bool:
        """Refresh one node's load (and cards, for static nodes); returns its health."""
        stub = self.stub(entry.node_id, entry.address)
        started = time.monotonic()
        try:
            reply: inference_pb2.ListModelsResponse = await stub.ListModels(
                inference_pb2.ListModelsRequest(), timeout=self._probe_timeout_s
            )
        except grpc.aio.AioRpcError as err:
            late = err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            if late and self._heard.get(entry.node_id, -1.0) >= started:  # busy, not frozen
                log.debug("upstream %s probe late while it answers calls", entry.node_id)
                self._misses.pop(entry.node_id, None)
                return entry.healthy
            if late:  # connected, silent: frozen, or a stalled host?
                misses = self._misses[entry.node_id] = self._misses.get(entry.node_id, 0) + 1
                if misses < FROZEN_AFTER_MISSES:
                    log.info("upstream %s probe late (%d in a row)", entry.node_id, misses)
                    return entry.healthy
            if entry.healthy:
                log.warning("upstream %s probe failed: %s", entry.node_id, err.code().name)
            self.catalog.set_health(entry.node_id, False)
            if late:
                self._give_up(entry.node_id)
            return False
        self._misses.pop(entry.node_id, None)
        if entry.static or not entry.cards:
            self.catalog.set_cards(entry.node_id, reply.models)
        self.catalog.set_load(entry.node_id, reply.load)
        if not entry.healthy:
            log.info("upstream %s (%s) is healthy", entry.node_id, entry.address)
        self.catalog.set_health(entry.node_id, True)
        return True

    async def probe_all(self) -> None:
        entries = self.catalog.entries()
        await asyncio.gather(*(self.probe(e) for e in entries))
        live = {e.node_id for e in self.catalog.entries()}
        for node_id in [n for n in self._channels if n not in live]:  # expired or deregistered
            self._stubs.pop(node_id, None)
            self._close_later(self._channels.pop(node_id)[2])
        for seen in (self._heard, self._misses):
            for node_id in [n for n in seen if n not in live]:
                del seen[node_id]
        for listener in self.after_probe:
            listener(self.catalog)

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
        # Retiring channels' calls are cut now: stopping does not wait out RETIRE_GRACE_S.
        channels = [ch for _, _, ch in self._channels.values()] + list(self._retiring)
        await asyncio.gather(*(ch.close() for ch in channels))
        await asyncio.gather(*self._closing, return_exceptions=True)
        self._channels.clear()
        self._stubs.clear()

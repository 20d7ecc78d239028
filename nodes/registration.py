"""A node announcing itself to a router: Register, periodic Heartbeat, Deregister on stop.

The router drops nodes that miss heartbeats, so a node that cannot reach the router keeps
trying; a router that restarted (and forgot the node) answers `known=false`, and the node
registers again. Registration never blocks serving: it runs as its own task.

With a registration token every call carries it as `x-mesh-node-token` metadata. The router
answers Register with a registration lease (`x-mesh-registration-lease`) that binds the entry to
this node; Heartbeat, Deregister and a refreshing Register carry it back. A router that refuses
the node (no or wrong token, registration off, its id taken or a static upstream's, a rate limit)
is treated like one that is away: one log line naming the reason when that starts, back-off
(at least the delay the router asks for), retries, one line when it ends; token and lease are
never logged.

With `credentials` (the node's router_tls) the channel is TLS: the router's certificate is
verified and the node's own presented, which a router may take as the registration credential
instead of the token. When the files rotate, the next call opens a channel with the new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

import grpc
import grpc.aio

from mesh.contract import registration as reasons
from mesh.contract.errors import ErrorDetails
from mesh.contract.node_token import DEFAULT_TOKEN_ENV, NodeToken
from mesh.contract.registration import LEASE_HEADER
from mesh.contract.serving import channel_options
from mesh.contract.status import error_details
from mesh.contract.tls import ChannelCredentialsSource, open_channel
from mesh.v1 import registry_pb2, registry_pb2_grpc
from nodes.server import NodeServicer

log = logging.getLogger(__name__)

# Why registration calls fail: the router cannot be reached, or it refuses this node.
FailureState = Literal["unreachable", "refused"]

# Statuses with which a router refuses a registry call (the reason says why); any other
# failure counts as the router being unreachable.
REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_REFUSAL_HINTS = {
    reasons.REGISTRATION_DISABLED: "the router takes no registrations (its router.registry.mode "
    "is off): give the router a registration token, or mode open on loopback",
    reasons.NODE_ID_STATIC: "this node's id is a static upstream of the router; give the node "
    "another id (--node-id)",
    reasons.NODE_ID_TAKEN: "another node holds a live registration with this id; it is free "
    "again when that one deregisters or misses heartbeats past the router's TTL",
    reasons.NOT_REGISTRATION_OWNER: "the router no longer knows this node's registration lease",
    reasons.REGISTRY_RATE_LIMITED: "too many registry calls from this host",
    reasons.REGISTRY_FULL: "the router's table holds its maximum of registered nodes",
}


def _refusal_hint(details: ErrorDetails, *, has_token: bool) -> str:
    """What the operator should know about a refusal, for the one log line."""
    if details.reason in _REFUSAL_HINTS:
        return _REFUSAL_HINTS[details.reason]
    if details.reason == "NODE_CERTIFICATE_REQUIRED":
        return (
            "the router takes node certificates as the registration credential and this node "
            "presented none it accepts (router_tls cert_file/key_file; --router-tls-cert)"
        )
    if details.reason in ("NODE_TOKEN_MISSING", "NODE_TOKEN_REJECTED"):
        if has_token:
            return "the router does not accept this node's registration token"
        return (
            "the router wants a registration token and this node has none "
            f"(--router-token-env / --router-token-file; default ${DEFAULT_TOKEN_ENV})"
        )
    # Field problems name fields and rules, never values: safe to log, and the actual fix.
    problems = "; ".join(f"{v.field}: {v.description}" for v in details.violations[:3])
    return f"{details.message}: {problems}" if problems else details.message


class RegistrationLoop:
    """Keeps one node registered with one router until `stop`.

    `address` is what the router will dial: the node's reachable host:port, not a wildcard
    listen address. `interval_s` is the heartbeat period until the router states its own.
    `token` is the router's registration token, if it wants one; `credentials` make the
    channel TLS (and present the node's certificate).
    """

    def __init__(
        self,
        servicer: NodeServicer,
        address: str,
        router_address: str,
        interval_s: float = 2.0,
        *,
        token: NodeToken | None = None,
        credentials: ChannelCredentialsSource | None = None,
        call_timeout_s: float = 5.0,
        max_backoff_s: float = 10.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.servicer = servicer
        self.address = address
        self.router_address = router_address
        self.interval_s = interval_s
        self.call_timeout_s = call_timeout_s
        self.max_backoff_s = max_backoff_s
        self._token = token
        self._lease: str | None = None  # from the router's last Register answer; never logged
        self.registered = False
        self.registrations = 0
        self.heartbeats = 0
        self.consecutive_failures = 0
        self.failure: FailureState | None = None
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._generation = 0  # of the credentials the channel was opened with
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def node_id(self) -> str:
        return self.servicer.config.id

    async def start(self) -> None:
        """Begin registering in the background (returns at once)."""
        if self._task is not None:
            return
        self._stopping.clear()
        self._channel = self._open_channel()
        self._task = asyncio.create_task(self._run(), name=f"registration-{self.node_id}")

    async def stop(self) -> None:
        """Stop heartbeating and leave the router's table (best effort, bounded)."""
        self._stopping.set()
        if self._task is not None:
            # Let the call in flight finish (each is bounded by call_timeout_s). Cancelled
            # mid-Register, the router lists this node while the node believes itself out of
            # the table and never says goodbye (seen under load in CI: the router kept it).
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.call_timeout_s + 1.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except asyncio.CancelledError:
                if not self._task.done():
                    raise  # stop() itself was cancelled
            self._task = None
        if self._channel is None:
            return
        try:
            if self.registered:
                stub = registry_pb2_grpc.RegistryServiceStub(self._channel)  # type: ignore[no-untyped-call]
                await stub.Deregister(
                    registry_pb2.DeregisterRequest(node_id=self.node_id),
                    timeout=self.call_timeout_s,
                    metadata=self._metadata(),
                )
        except grpc.aio.AioRpcError as err:
            # The router drops us after its TTL anyway; a failed goodbye is not an error.
            log.info(
                "deregister of %s from %s failed: %s", self.node_id, self.router_address, err.code()
            )
        finally:
            self.registered = False
            self._lease = None
            await self._channel.close()
            self._channel = None

    def _open_channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return open_channel(self.router_address, None, options=channel_options())
        self._generation, credentials = self._credentials.current()
        options = [*channel_options(), *self._credentials.options()]
        return open_channel(self.router_address, credentials, options=options)

    async def _fresh_channel(self) -> grpc.aio.Channel:
        """The channel, reopened first when the TLS files changed since it was opened."""
        assert self._channel is not None
        if self._credentials is not None and self._credentials.current()[0] != self._generation:
            old, self._channel = self._channel, self._open_channel()
            await old.close()  # calls here are one at a time: none is in flight
        return self._channel

    async def _run(self) -> None:
        interval = self.interval_s
        while not self._stopping.is_set():
            try:
                channel = await self._fresh_channel()
                stub = registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]
                if not self.registered:
                    interval = await self._register(stub)
                elif not await self._heartbeat(stub):
                    continue  # forgotten by the router: register again right away
                self._recovered()
                delay = interval
            except grpc.aio.AioRpcError as err:
                if err.code() in REFUSALS:
                    details = error_details(err)
                    why = details.reason or err.code().name
                    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        # Not in the table as far as this router is concerned: start over.
                        self.registered = False
                    if why == reasons.NOT_REGISTRATION_OWNER:
                        self._lease = None
                    hint = _refusal_hint(details, has_token=self._token is not None)
                    delay = max(
                        self._failed(interval, "refused", why, hint), details.retry_after_s or 0.0
                    )
                else:
                    delay = self._failed(interval, "unreachable", err.code().name)
            except Exception as err:  # a bug here must not end registration for good
                delay = self._failed(interval, "unreachable", type(err).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self._token.metadata() if self._token is not None else ()
        return (*token, (LEASE_HEADER, self._lease)) if self._lease else token

    async def _heartbeat(self, stub: registry_pb2_grpc.RegistryServiceStub) -> bool:
        """Report load; False when the router no longer knows this node."""
        reply = await stub.Heartbeat(
            registry_pb2.HeartbeatRequest(node_id=self.node_id, load=self.servicer.node_load()),
            timeout=self.call_timeout_s,
            metadata=self._metadata(),
        )
        self.heartbeats += 1
        if not reply.known:
            # The router forgot us (restart, TTL expiry).
            log.info(
                "router %s forgot node %s; registering again", self.router_address, self.node_id
            )
            self.registered = False
        return bool(reply.known)

    def _failed(self, interval: float, state: FailureState, why: str, hint: str = "") -> float:
        """Count a failed call; returns the back-off delay. Logs only when the state changes."""
        self.consecutive_failures += 1
        if state != self.failure:
            self.failure = state
            if state == "refused":
                log.warning(
                    "router %s refused node %s (%s): %s; retrying with back-off",
                    self.router_address,
                    self.node_id,
                    why,
                    hint,
                )
            else:
                log.warning(
                    "router %s unreachable for node %s (%s); retrying with back-off",
                    self.router_address,
                    self.node_id,
                    why,
                )
        # Back off while the router is away or refuses, but never beyond a few heartbeats.
        exponent = min(self.consecutive_failures, 5)
        return min(interval * 2.0**exponent, max(self.max_backoff_s, interval))

    def _recovered(self) -> None:
        if self.consecutive_failures:
            log.info(
                "router %s %s node %s after %d failed calls",
                self.router_address,
                "accepted" if self.failure == "refused" else "reachable again for",
                self.node_id,
                self.consecutive_failures,
            )
        self.consecutive_failures = 0
        self.failure = None

    async def _register(self, stub: registry_pb2_grpc.RegistryServiceStub) -> float:
        """Register; returns the heartbeat interval to use (the router's, if it states one)."""
        call = stub.Register(
            registry_pb2.RegisterRequest(
                node_id=self.node_id,
                address=self.address,
                models=[self.servicer.model_card()],
                load=self.servicer.node_load(),
            ),
            timeout=self.call_timeout_s,
            metadata=self._metadata(),
        )
        reply = await call
        trailing = await call.trailing_metadata()
        lease = next((v for k, v in trailing or () if k == LEASE_HEADER), None)
        # A router that issues no lease (an older one) gets none back.
        self._lease = lease.decode() if isinstance(lease, bytes) else lease
        self.registered = True
        self.registrations += 1
        log.info("node %s registered with %s", self.node_id, self.router_address)
        stated = reply.heartbeat_interval.ToNanoseconds() / 1e9
        return stated if stated > 0 else self.interval_s

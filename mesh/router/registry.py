"""mesh.v1.RegistryService: who may join the routing table, with what, and how often.

Every write passes, in order: the registry mode and token (`registry_auth`), the size of the
message (checked before it is parsed, see `add_registry_service`), a per-peer rate limit
(`registry_limits`), the payload rules (`registry_validation`), and ownership: a static
upstream's id is never registered over, and a registered node id belongs to whoever holds its
registration lease (`mesh.contract.registration`) until it deregisters or its TTL runs out.
ListNodes is open in every mode. With a shared registry (router replicas on one PostgreSQL
ledger) the holder of an id is looked up in, and written to, the shared table first.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.protobuf import duration_pb2

from mesh.config import RegistrySettings
from mesh.contract.errors import Code, FieldViolation, InvalidRequest, MeshError
from mesh.contract.registration import (
    LEASE_HEADER,
    NODE_ID_STATIC,
    NODE_ID_TAKEN,
    NOT_REGISTRATION_OWNER,
    REGISTRATION_TOO_LARGE,
    REGISTRY_FULL,
    REGISTRY_RATE_LIMITED,
)
from mesh.contract.status import unary_error_boundary
from mesh.contract.tls import peer_identities
from mesh.router.catalog import Catalog, NodeEntry, node_info
from mesh.router.registry_auth import Metadata, RegistryAccess
from mesh.router.registry_limits import Clock, PeerRateLimiter
from mesh.router.registry_validation import (
    validate_deregister,
    validate_heartbeat,
    validate_register,
)
from mesh.router.shared_registry import RegistryStoreUnavailable, SharedRegistry
from mesh.v1 import registry_pb2

log = logging.getLogger(__name__)

REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
# Heartbeat, Deregister and ListNodes carry an id, a load or a page token: a few hundred bytes
# (16 KiB leaves room for the page token of a static upstream with a very long id).
SMALL_MESSAGE_BYTES = 16 * 1024
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class StaticNodeId(MeshError):
    """A registry write names a static upstream (config or `mesh up`), which config owns."""

    code = Code.ALREADY_EXISTS
    reason = NODE_ID_STATIC


class NodeIdTaken(MeshError):
    """Register of an id whose live registration belongs to another lease holder."""

    code = Code.ALREADY_EXISTS
    reason = NODE_ID_TAKEN


class NotRegistrationOwner(MeshError):
    """Heartbeat or Deregister of a registered node without its registration lease."""

    code = Code.PERMISSION_DENIED
    reason = NOT_REGISTRATION_OWNER


class RegistryRateLimited(MeshError):
    """One peer host made more registry writes than router.registry allows per minute."""

    code = Code.RESOURCE_EXHAUSTED
    reason = REGISTRY_RATE_LIMITED


class RegistryFull(MeshError):
    """The table already holds router.registry.max_registered_nodes registered nodes."""

    code = Code.RESOURCE_EXHAUSTED
    reason = REGISTRY_FULL


@dataclass(frozen=True)
class OversizedMessage:
    """Handed to a registry method instead of a message above its size limit (never parsed)."""

    size: int
    limit: int


_Message = TypeVar("_Message")


def _parsed(request: _Message | OversizedMessage, method: str) -> _Message:
    if isinstance(request, OversizedMessage):
        raise InvalidRequest(
            f"the {method} message is {request.size} bytes; this router takes at most "
            f"{request.limit}",
            reason=REGISTRATION_TOO_LARGE,
            violations=[FieldViolation("", f"message larger than {request.limit} bytes")],
            metadata={"bytes": str(request.size), "limit": str(request.limit)},
        )
    return request


def _digest(lease: str) -> bytes:
    return hashlib.sha256(lease.encode()).digest()


def _lease_of(metadata: Metadata) -> str | None:
    value = next((v for k, v in metadata or () if k.lower() == LEASE_HEADER), None)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value or None


def _holds(entry: NodeEntry, lease: str | None) -> bool:
    """Whether `lease` is the one the entry was registered with (constant time)."""
    return (
        lease is not None
        and bool(entry.lease_digest)
        and hmac.compare_digest(_digest(lease), entry.lease_digest)
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


class RegistryServicer:
    """mesh.v1.RegistryService over a Catalog (serve it with `add_registry_service`).

    `access` decides who may write at all; it is checked before the request is looked at, so
    a stranger learns nothing about the table (not even whether its registration would be
    valid). `settings` bounds payloads, table size and per-peer rates.
    """

    def __init__(
        self,
        catalog: Catalog,
        breaker_state: Callable[[str], int] | None = None,
        *,
        access: RegistryAccess,
        settings: RegistrySettings | None = None,
        clock: Clock = time.monotonic,
        shared: SharedRegistry | None = None,
    ) -> None:
        self._catalog = catalog
        self._shared = shared
        self._breaker_state = breaker_state or (lambda _node: registry_pb2.BREAKER_STATE_CLOSED)
        self.access = access
        self.settings = settings or RegistrySettings()
        self.limiter = PeerRateLimiter(
            self.settings.max_registrations_per_minute, self.settings.rate_limit_peers, clock
        )

    @classmethod
    def from_settings(
        cls,
        catalog: Catalog,
        settings: RegistrySettings,
        breaker_state: Callable[[str], int] | None = None,
        shared: SharedRegistry | None = None,
    ) -> RegistryServicer:
        """The router's registry: mode and token resolved (and the token read) now."""
        access = RegistryAccess.from_settings(settings)
        log.info("node registration: %s", access.describe())
        return cls(catalog, breaker_state, access=access, settings=settings, shared=shared)

    # -- the checks every write shares ------------------------------------------------------
    def _charge(self, context: Context) -> None:
        wait_s = self.limiter.take(context.peer() or "")
        if wait_s > 0:
            raise RegistryRateLimited(
                "too many registry calls from this peer: at most "
                f"{self.settings.max_registrations_per_minute} per minute",
                metadata={"limit": "max_registrations_per_minute"},
                retry_after_s=round(wait_s, 3),
            )

    def _static_refused(self, entry: NodeEntry, code: Code) -> StaticNodeId:
        return StaticNodeId(
            f"node id {entry.node_id} is a static upstream of this router (its config); "
            "a registered node cannot take it over: give the node another id",
            code=code,
            metadata={"node_id": entry.node_id},
        )

    def _not_owner(self, entry: NodeEntry, verb: str) -> NotRegistrationOwner:
        return NotRegistrationOwner(
            f"only the holder of node {entry.node_id}'s registration lease ({LEASE_HEADER}) "
            f"may {verb} it",
            metadata={"node_id": entry.node_id, "header": LEASE_HEADER},
        )

    # -- RPCs -------------------------------------------------------------------------------
    @unary_error_boundary
    async def Register(
        self, request: registry_pb2.RegisterRequest | OversizedMessage, context: Context
    ) -> registry_pb2.RegisterResponse:
        metadata = context.invocation_metadata()
        self.access.authorize(metadata, peer_identities(context))
        self._charge(context)
        req = _parsed(request, "Register")
        validate_register(req, self.settings.max_models_per_node)
        presented = _lease_of(metadata)
        if self._shared is not None:  # whoever holds the id, through any replica
            await self._shared.pull(req.node_id)
        entry = self._catalog.get(req.node_id)
        if entry is not None and entry.static:
            raise self._static_refused(entry, Code.ALREADY_EXISTS)
        if entry is not None and not _holds(entry, presented):
            raise NodeIdTaken(
                f"node id {req.node_id} is registered by another node; it is free again when "
                "that registration is deregistered or misses its heartbeats for the TTL",
                metadata={"node_id": req.node_id},
                retry_after_s=round(self._catalog.expires_in(entry), 3),
            )
        if entry is None and self._catalog.registered_count() >= (
            limit := self.settings.max_registered_nodes
        ):
            raise RegistryFull(
                f"the routing table holds {limit} registered nodes, its limit",
                metadata={"limit": str(limit)},
            )
        # A refresh by the holder keeps its lease; a new registration gets a fresh one.
        lease = presented if entry is not None and presented else secrets.token_urlsafe(32)
        if self._shared is not None and not await self._shared.claim(
            req.node_id, req.address, req.models, req.load, _digest(lease)
        ):  # another replica gave the id to someone else since the pull
            raise NodeIdTaken(
                f"node id {req.node_id} is registered by another node; it is free again when "
                "that registration is deregistered or misses its heartbeats for the TTL",
                metadata={"node_id": req.node_id},
                retry_after_s=self._catalog.ttl_s,
            )
        self._catalog.register(
            req.node_id, req.address, req.models, req.load, lease_digest=_digest(lease)
        )
        if entry is None:
            log.info(
                "node %s registered at %s with %d model(s)",
                req.node_id,
                req.address,
                len(req.models),
            )
        context.set_trailing_metadata(((LEASE_HEADER, lease),))
        return registry_pb2.RegisterResponse(
            heartbeat_interval=_duration(self._catalog.heartbeat_interval_s),
            ttl=_duration(self._catalog.ttl_s),
        )

    @unary_error_boundary
    async def Heartbeat(
        self, request: registry_pb2.HeartbeatRequest | OversizedMessage, context: Context
    ) -> registry_pb2.HeartbeatResponse:
        metadata = context.invocation_metadata()
        self.access.authorize(metadata, peer_identities(context))
        if isinstance(request, OversizedMessage):
            self._charge(context)
        req = _parsed(request, "Heartbeat")
        validate_heartbeat(req)
        if self._shared is not None:
            with contextlib.suppress(RegistryStoreUnavailable):  # then this replica's own view
                await self._shared.pull(req.node_id)
        entry = self._catalog.get(req.node_id)
        owned = entry is not None and not entry.static and _holds(entry, _lease_of(metadata))
        # A holder's heartbeat at (about) its interval is never limited, however many nodes
        # share the peer's host; anything else (unknown ids, strangers, bursts) is counted.
        on_schedule = (
            owned
            and entry is not None
            and self._catalog.seconds_since_seen(entry) >= self._catalog.heartbeat_interval_s / 2
        )
        if not on_schedule:
            self._charge(context)
        if entry is None:
            return registry_pb2.HeartbeatResponse(known=False)
        if entry.static:
            raise self._static_refused(entry, Code.PERMISSION_DENIED)
        if not owned:
            raise self._not_owner(entry, "heartbeat for")
        if self._shared is not None and not await self._shared.heartbeat(
            req.node_id, req.load, entry.lease_digest
        ):  # lost the id in the shared table meanwhile: register again
            self._catalog.deregister(req.node_id)
            return registry_pb2.HeartbeatResponse(known=False)
        self._catalog.heartbeat(req.node_id, req.load)
        return registry_pb2.HeartbeatResponse(known=True)

    @unary_error_boundary
    async def Deregister(
        self, request: registry_pb2.DeregisterRequest | OversizedMessage, context: Context
    ) -> registry_pb2.DeregisterResponse:
        metadata = context.invocation_metadata()
        self.access.authorize(metadata, peer_identities(context))
        self._charge(context)
        req = _parsed(request, "Deregister")
        validate_deregister(req)
        if self._shared is not None:
            with contextlib.suppress(RegistryStoreUnavailable):
                await self._shared.pull(req.node_id)
        entry = self._catalog.get(req.node_id)
        if entry is None:  # already gone (TTL, or a goodbye said twice): nothing to do
            return registry_pb2.DeregisterResponse()
        if entry.static:
            raise self._static_refused(entry, Code.PERMISSION_DENIED)
        if not _holds(entry, _lease_of(metadata)):
            raise self._not_owner(entry, "deregister")
        if self._shared is not None:
            await self._shared.deregister(req.node_id, entry.lease_digest)
        self._catalog.deregister(req.node_id)
        log.info("node %s deregistered", req.node_id)
        return registry_pb2.DeregisterResponse()

    @unary_error_boundary
    async def ListNodes(
        self, request: registry_pb2.ListNodesRequest | OversizedMessage, context: Context
    ) -> registry_pb2.ListNodesResponse:
        req = _parsed(request, "ListNodes")
        page, token = self._catalog.page(req.page_size, req.page_token)
        return registry_pb2.ListNodesResponse(
            nodes=[node_info(e, self._breaker_state(e.node_id)) for e in page],
            next_page_token=token,
        )


def _bounded(parse: Callable[[bytes], Any], limit: int) -> Callable[[bytes], Any]:
    """A request deserializer that hands over OversizedMessage instead of parsing above `limit`.

    The server's receive limit (router.max_message_bytes, 4 MiB) is per server, not per
    service; this gives RegistryService its own, smaller one. With the 20,000-card Register of
    issue 14 (880 KB here), a refused call took 2.0-2.4 ms round trip with this check against
    3.5-4.8 ms when parsed and refused by card count (same run, a noisy shared 2-core machine):
    the parse is event-loop time every other call waits for. Returning (not raising) keeps the
    refusal a precise INVALID_ARGUMENT instead of grpc's logged UNKNOWN.
    """

    def deserialize(raw: bytes) -> Any:
        if len(raw) > limit:
            return OversizedMessage(len(raw), limit)
        return parse(raw)

    return deserialize


def add_registry_service(servicer: RegistryServicer, server: grpc.aio.Server) -> None:
    """Serve `servicer` as mesh.v1.RegistryService with per-method message size limits.

    Replaces the generated add_RegistryServiceServicer_to_server (same method table) so the
    deserializers can refuse oversized messages unparsed.
    """
    r = registry_pb2
    methods: list[tuple[str, Callable[..., Any], Any, Any, int]] = [
        (
            "Register",
            servicer.Register,
            r.RegisterRequest,
            r.RegisterResponse,
            servicer.settings.max_register_bytes,
        ),
        ("Heartbeat", servicer.Heartbeat, r.HeartbeatRequest, r.HeartbeatResponse, 0),
        ("Deregister", servicer.Deregister, r.DeregisterRequest, r.DeregisterResponse, 0),
        ("ListNodes", servicer.ListNodes, r.ListNodesRequest, r.ListNodesResponse, 0),
    ]
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=_bounded(request.FromString, limit or SMALL_MESSAGE_BYTES),
            response_serializer=response.SerializeToString,
        )
        for name, behaviour, request, response, limit in methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REGISTRY_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(REGISTRY_SERVICE, handlers)

"""Run a router in the current event loop: pool, guards, servicers, server, graceful stop."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from guards.audit import AuditLog
from guards.grpc_adapter import guard_inference_servicer
from guards.policy_service import PolicyServicer, admin_key_authorizer
from guards.policy_store import DEFAULT_POLICY_PATH, PolicyStore
from mesh.config import RouterConfig
from mesh.contract.errors import Code, MeshError
from mesh.contract.serving import BoundServer, bound_address, create_server
from mesh.router.servicer import RouterServicer
from mesh.router.upstream import UpstreamPool
from mesh.telemetry.setup import Telemetry
from mesh.v1 import inference_pb2, inference_pb2_grpc, policy_pb2, policy_pb2_grpc

log = logging.getLogger(__name__)
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
POLICY_SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name


def _admin_disabled(context: Any) -> None:
    raise MeshError(
        "the admin API is disabled: configure an admin key (router.guards.admin_key_env)",
        code=Code.PERMISSION_DENIED,
        reason="ADMIN_API_DISABLED",
    )


class RouterRuntime:
    """The router front node: guards outside, routing inside, telemetry around both."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        router_id: str = "router",
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.telemetry = telemetry
        self.pool = UpstreamPool(
            probe_interval_s=config.health_interval_s,
            max_message_bytes=config.max_message_bytes,
            client_interceptors=telemetry.client_interceptors() if telemetry else None,
        )
        for upstream in config.upstreams:
            self.pool.add(upstream.id, upstream.address, static=True)
        self.servicer = RouterServicer(
            self.pool, router_id=router_id, default_timeout_s=config.default_timeout_s
        )
        guards = config.guards
        self.policy_store: PolicyStore | None = None
        self.audit: AuditLog | None = None
        if guards.enabled:
            self.policy_store = PolicyStore.from_file(guards.policy_file or DEFAULT_POLICY_PATH)
            self.audit = AuditLog(guards.resolved_audit_url())
        self._bound: BoundServer | None = None
        self.address = ""

    def add_upstream(self, node_id: str, address: str) -> None:
        self.pool.add(node_id, address, static=True)

    def _registrations(self) -> list[tuple[Any, Any, str]]:
        inference: Any = self.servicer
        policy: Any = policy_pb2_grpc.PolicyServiceServicer()  # UNIMPLEMENTED without guards
        if self.policy_store is not None:
            inference = guard_inference_servicer(self.servicer, self.policy_store, audit=self.audit)
            key = self.config.guards.admin_key()
            policy = PolicyServicer(
                self.policy_store,
                admin_key_authorizer(key) if key else _admin_disabled,
                self.audit,
            )
        return [
            (
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                inference,
                INFERENCE_SERVICE,
            ),
            (policy_pb2_grpc.add_PolicyServiceServicer_to_server, policy, POLICY_SERVICE),
        ]

    async def start(self, listen: str | None = None) -> str:
        listen = listen or self.config.listen
        if self.audit is not None:
            await self.audit.start()
        if (
            self.policy_store is not None
            and self.config.guards.policy_file
            and self.config.guards.watch
        ):
            self.policy_store.watch(self.config.guards.policy_file)
        await self.pool.probe_all()
        self.pool.start()
        interceptors: list[grpc.aio.ServerInterceptor] = (
            self.telemetry.server_interceptors() if self.telemetry else []
        )
        self._bound = create_server(
            listen,
            self._registrations(),
            max_message_bytes=self.config.max_message_bytes,
            interceptors=interceptors,
        )
        await self._bound.server.start()
        self.address = bound_address(listen, self._bound.port)
        await self._bound.set_serving(True)
        log.info("router serving on %s with %d upstream(s)", self.address, len(self.pool.nodes()))
        return self.address

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._bound is not None:
            await self._bound.stop(grace_s)
        await self.pool.close()
        if self.policy_store is not None:
            await self.policy_store.stop_watching()
        if self.audit is not None:
            await self.audit.close()

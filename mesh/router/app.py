"""Run a router in the current event loop: pool, servicers, server, graceful stop."""

from __future__ import annotations

import logging

from mesh.config import RouterConfig
from mesh.contract.serving import BoundServer, bound_address, create_server
from mesh.router.servicer import RouterServicer
from mesh.router.upstream import UpstreamPool
from mesh.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)

log = logging.getLogger(__name__)
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
POLICY_SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name


class RouterRuntime:
    """The router front node."""

    def __init__(self, config: RouterConfig, *, router_id: str = "router") -> None:
        self.config = config
        self.pool = UpstreamPool(
            probe_interval_s=config.health_interval_s,
            max_message_bytes=config.max_message_bytes,
        )
        for upstream in config.upstreams:
            self.pool.add(upstream.id, upstream.address, static=True)
        self.servicer = RouterServicer(
            self.pool, router_id=router_id, default_timeout_s=config.default_timeout_s
        )
        self._bound: BoundServer | None = None
        self.address = ""

    def add_upstream(self, node_id: str, address: str) -> None:
        self.pool.add(node_id, address, static=True)

    async def start(self, listen: str | None = None) -> str:
        listen = listen or self.config.listen
        await self.pool.probe_all()
        self.pool.start()
        self._bound = create_server(
            listen,
            [
                (
                    inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                    self.servicer,
                    INFERENCE_SERVICE,
                ),
                # Guard policies are administered here once the guard chain lands; until then
                # the base servicer answers UNIMPLEMENTED, but reflection already lists it.
                (
                    policy_pb2_grpc.add_PolicyServiceServicer_to_server,
                    policy_pb2_grpc.PolicyServiceServicer(),
                    POLICY_SERVICE,
                ),
            ],
            max_message_bytes=self.config.max_message_bytes,
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

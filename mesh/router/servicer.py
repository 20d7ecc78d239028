"""The router's InferenceService: the gRPC door onto the request pipeline.

Each call's RequestContext was built by the EdgeInterceptor (identity, validation, request id,
deadline); this class only hands it to the pipeline and turns MeshErrors into rich statuses
(the error boundaries). Routing, guards and money live in mesh/router/pipeline/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from mesh.contract.status import stream_error_boundary, unary_error_boundary
from mesh.router.catalog import iter_cards
from mesh.router.edge import current_request
from mesh.router.pipeline.plan import Planner
from mesh.router.pipeline.run import Pipeline
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no usable generic type here


class RouterServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Routes InferenceService calls over the nodes of the routing table."""

    def __init__(self, pipeline: Pipeline, planner: Planner, *, router_id: str) -> None:
        self.pipeline = pipeline
        self.planner = planner
        self.router_id = router_id

    @unary_error_boundary
    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: Context
    ) -> inference_pb2.GenerateResponse:
        return await self.pipeline.generate(current_request())

    @stream_error_boundary
    async def GenerateStream(
        self, request: inference_pb2.GenerateStreamRequest, context: Context
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        async for event in self.pipeline.stream(current_request()):
            yield event

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: Context
    ) -> inference_pb2.ListModelsResponse:
        """Healthy models of the routing table, and the load they carry together."""
        load = types_pb2.NodeLoad()
        for entry in self.planner.catalog.entries():
            if entry.healthy:
                load.running += entry.load.running
                load.waiting += entry.load.waiting
                load.max_inflight += entry.load.max_inflight
        healthy = [c for c in self.planner.candidates() if c.healthy]
        return inference_pb2.ListModelsResponse(
            node_id=self.router_id, models=iter_cards(healthy), load=load
        )

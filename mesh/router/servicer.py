"""The router's InferenceService: pick candidates, forward, fall back, explain.

Fallback happens only before the first event reaches the caller (the commit point): after
that a failure ends the stream with a clear status, never a silent splice of two models.
Deadlines travel as the remaining time on every upstream call; a cancelled caller cancels
the upstream call, which aborts the generation on the node.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from mesh.contract.errors import DeadlineExceeded, ModelNotFound, UpstreamUnavailable
from mesh.contract.status import (
    passthrough_status,
    stream_error_boundary,
    unary_error_boundary,
)
from mesh.contract.validation import validate_generation
from mesh.router.upstream import Upstream, UpstreamPool
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

# Only these mean "this node could not take the request": safe to try the next one.
_FALLBACK_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass
class RoutePlan:
    """Candidates in the order they will be tried, and why."""

    policy: str
    reason: str
    candidates: list[tuple[Upstream, types_pb2.ModelCard]]
    rejected: list[types_pb2.RouteCandidate] = field(default_factory=list)


def plan_route(pool: UpstreamPool, hints: types_pb2.RoutingHints) -> RoutePlan:
    """Pinned model, or every healthy node in order (first healthy wins)."""
    pinned = hints.model if hints.model and hints.model != "auto" else ""
    chosen: list[tuple[Upstream, types_pb2.ModelCard]] = []
    rejected: list[types_pb2.RouteCandidate] = []
    known = False
    for node in pool.nodes():
        cards = [c for c in [node.serves(pinned)] if c] if pinned else node.cards[:1]
        for card in cards:
            known = True
            if node.healthy:
                chosen.append((node, card))
            else:
                rejected.append(
                    types_pb2.RouteCandidate(
                        node_id=node.node_id, model=card.model_id, rejected_reason="unhealthy"
                    )
                )
    if pinned and not known:
        raise ModelNotFound(
            f"no node serves model {pinned!r}",
            metadata={"model": pinned},
        )
    if not chosen:
        raise UpstreamUnavailable(
            "no healthy node can serve this request" + (f" (model {pinned!r})" if pinned else ""),
            metadata={"model": pinned or "auto", "nodes": str(len(pool.nodes()))},
        )
    if pinned:
        reason = f"pinned {pinned}: first healthy node serving it is {chosen[0][0].node_id}"
        return RoutePlan("pinned", reason, chosen, rejected)
    reason = f"first healthy node: {chosen[0][0].node_id} ({chosen[0][1].model_id})"
    return RoutePlan("first-healthy", reason, chosen, rejected)


class RouterServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Forwards InferenceService calls to the nodes of an UpstreamPool."""

    def __init__(self, pool: UpstreamPool, *, router_id: str, default_timeout_s: float) -> None:
        self.pool = pool
        self.router_id = router_id
        self.default_timeout_s = default_timeout_s

    def _deadline(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        remaining = context.time_remaining()
        budget = self.default_timeout_s if remaining is None else min(remaining, 1e6)
        return time.monotonic() + budget

    @staticmethod
    def _remaining(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before an upstream answered")
        return left

    def _route_info(
        self, plan: RoutePlan, node: Upstream, card: types_pb2.ModelCard, attempts: int
    ) -> types_pb2.RouteInfo:
        candidates = [
            types_pb2.RouteCandidate(
                node_id=n.node_id,
                model=c.model_id,
                chosen=n is node,
                rejected_reason="" if n is node else ("failed" if i < attempts else "not needed"),
            )
            for i, (n, c) in enumerate(plan.candidates)
        ]
        return types_pb2.RouteInfo(
            node_id=node.node_id,
            model=card.model_id,
            provider=card.provider,
            policy=plan.policy,
            reason=plan.reason
            if attempts == 1
            else f"{plan.reason}; fell back after {attempts - 1} failed attempt(s)",
            candidates=candidates + list(plan.rejected),
            attempts=attempts,
            tier=card.tier,
        )

    def _exhausted(self, plan: RoutePlan, failures: list[str]) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"all {len(plan.candidates)} candidate node(s) failed",
            metadata={"attempts": str(len(failures)), "failures": "; ".join(failures)[:512]},
        )

    def _note_failure(self, node: Upstream, err: grpc.aio.AioRpcError, failures: list[str]) -> None:
        failures.append(f"{node.node_id}: {err.code().name}")
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            self.pool.mark_failed(node)

    @unary_error_boundary
    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.GenerateResponse:
        validate_generation(request)
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        plan = plan_route(self.pool, request.routing)
        deadline = self._deadline(context)
        failures: list[str] = []
        for attempt, (node, card) in enumerate(plan.candidates, start=1):
            try:
                reply: inference_pb2.GenerateResponse = await node.stub.Generate(
                    request, timeout=self._remaining(deadline)
                )
            except grpc.aio.AioRpcError as err:
                if err.code() in _FALLBACK_CODES:
                    self._note_failure(node, err, failures)
                    continue
                await context.abort_with_status(passthrough_status(err))
                raise  # unreachable: abort raises
            reply.route.CopyFrom(self._route_info(plan, node, card, attempt))
            return reply
        raise self._exhausted(plan, failures)

    @stream_error_boundary
    async def GenerateStream(
        self,
        request: inference_pb2.GenerateStreamRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        validate_generation(request)
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        plan = plan_route(self.pool, request.routing)
        deadline = self._deadline(context)
        failures: list[str] = []
        for attempt, (node, card) in enumerate(plan.candidates, start=1):
            call = node.stub.GenerateStream(request, timeout=self._remaining(deadline))
            committed = False
            try:
                async for event in call:
                    if event.HasField("summary"):
                        event.summary.route.CopyFrom(self._route_info(plan, node, card, attempt))
                    committed = True
                    yield event
                return
            except grpc.aio.AioRpcError as err:
                if not committed and err.code() in _FALLBACK_CODES:
                    self._note_failure(node, err, failures)
                    continue
                if committed:
                    log.warning(
                        "stream %s from %s failed after the commit point: %s",
                        request.request_id,
                        node.node_id,
                        err.code().name,
                    )
                await context.abort_with_status(passthrough_status(err))
                raise
            finally:
                call.cancel()  # no-op when finished; aborts the node's generation otherwise
        raise self._exhausted(plan, failures)

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.ListModelsResponse:
        seen: dict[str, types_pb2.ModelCard] = {}
        load = types_pb2.NodeLoad()
        for node in self.pool.nodes():
            if not node.healthy:
                continue
            load.running += node.load.running
            load.waiting += node.load.waiting
            load.max_inflight += node.load.max_inflight
            for card in node.cards:
                seen.setdefault(card.model_id, card)
        return inference_pb2.ListModelsResponse(
            node_id=self.router_id, models=list(seen.values()), load=load
        )

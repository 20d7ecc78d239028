"""The router's InferenceService: pick candidates, forward, fall back, explain.

Fallback happens only before the first event reaches the caller (the commit point): after
that a failure ends the stream with a clear status, never a silent splice of two models.
Deadlines travel as the remaining time on every upstream call; a cancelled caller cancels
the upstream call, which aborts the generation on the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import grpc
import grpc.aio

from mesh.contract.errors import DeadlineExceeded, MeshError, ModelNotFound, UpstreamUnavailable
from mesh.contract.status import (
    passthrough_status,
    stream_error_boundary,
    unary_error_boundary,
)
from mesh.contract.validation import validate_generation
from mesh.router.upstream import Upstream, UpstreamPool
from mesh.telemetry import semconv as sc
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

log = logging.getLogger(__name__)
_FINISH_NAMES = {
    types_pb2.FINISH_REASON_STOP: "stop",
    types_pb2.FINISH_REASON_LENGTH: "length",
    types_pb2.FINISH_REASON_ABORTED: "aborted",
    types_pb2.FINISH_REASON_GUARD_BLOCKED: "guard_blocked",
}

# What the stream producer hands the relaying generator: an event, an error, or None (done).
_StreamItem: TypeAlias = (
    "inference_pb2.GenerateStreamResponse | grpc.aio.AioRpcError | MeshError | None"
)
_STREAM_BUFFER = 32

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


def _record_plan(route_span: Any, plan: RoutePlan) -> None:
    """The decision on the route span: first choice, candidate count, reason."""
    node, card = plan.candidates[0]
    sc.record_route(
        route_span,
        node=node.node_id,
        model=card.model_id,
        provider=card.provider,
        candidates=len(plan.candidates),
        reason=plan.reason,
    )


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

    @staticmethod
    def _record_reply(
        span: Any, reply: inference_pb2.GenerateResponse | inference_pb2.GenerationSummary
    ) -> None:
        sc.record_usage(
            span,
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            cached_input_tokens=reply.usage.cached_input_tokens,
            response_model=reply.model,
            finish_reasons=[_FINISH_NAMES.get(reply.finish_reason, "unknown")],
            response_id=reply.request_id,
        )

    def _attempt_span(
        self,
        node: Upstream,
        card: types_pb2.ModelCard,
        attempt: int,
        stream: bool,
        sampling: types_pb2.SamplingParams,
    ) -> Any:
        return sc.attempt_span(
            card.model_id,
            card.provider,
            attempt=attempt,
            node=node.node_id,
            server_address=node.address,
            stream=stream,
            max_tokens=sampling.max_tokens if sampling.HasField("max_tokens") else None,
            temperature=sampling.temperature if sampling.HasField("temperature") else None,
        )

    @unary_error_boundary
    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.GenerateResponse:
        validate_generation(request)
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        sc.tag_request(request.request_id)
        plan = plan_route(self.pool, request.routing)
        deadline = self._deadline(context)
        failures: list[str] = []
        with sc.route_span(plan.policy, request_id=request.request_id) as route_span:
            _record_plan(route_span, plan)
            for attempt, (node, card) in enumerate(plan.candidates, start=1):
                with self._attempt_span(node, card, attempt, False, request.sampling) as span:
                    try:
                        reply: inference_pb2.GenerateResponse = await node.stub.Generate(
                            request, timeout=self._remaining(deadline)
                        )
                    except grpc.aio.AioRpcError as err:
                        sc.mark_outcome(span, err.code().name, err.details() or "")
                        if err.code() in _FALLBACK_CODES:
                            self._note_failure(node, err, failures)
                            continue
                        await context.abort_with_status(passthrough_status(err))
                        raise  # unreachable: abort raises
                    self._record_reply(span, reply)
                reply.route.CopyFrom(self._route_info(plan, node, card, attempt))
                sc.record_route_result(
                    route_span,
                    attempts=attempt,
                    actual_cost_usd=reply.usage.cost_usd,
                    node=node.node_id,
                )
                return reply
            sc.record_route_result(route_span, attempts=len(failures))
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
        sc.tag_request(request.request_id)
        plan = plan_route(self.pool, request.routing)
        # grpc.aio may resume a response generator in a fresh context copy, so spans cannot
        # stay attached across `yield`: a producer task owns the upstream call and its spans,
        # and this generator only relays what it queues (bounded, so backpressure holds).
        events: asyncio.Queue[_StreamItem] = asyncio.Queue(maxsize=_STREAM_BUFFER)
        producer = asyncio.create_task(
            self._produce_stream(request, plan, self._deadline(context), events),
            name=f"stream-{request.request_id}",
        )
        try:
            while True:
                item = await events.get()
                if isinstance(item, inference_pb2.GenerateStreamResponse):
                    yield item
                elif item is None:
                    return
                elif isinstance(item, grpc.aio.AioRpcError):
                    await context.abort_with_status(passthrough_status(item))
                else:
                    raise item
        finally:
            producer.cancel()  # the producer's finally cancels the upstream call
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def _produce_stream(
        self,
        request: inference_pb2.GenerateStreamRequest,
        plan: RoutePlan,
        deadline: float,
        events: asyncio.Queue[_StreamItem],
    ) -> None:
        """Try candidates until one commits (sends its first event), queueing what it sends."""
        failures: list[str] = []
        try:
            with sc.route_span(plan.policy, request_id=request.request_id) as route_span:
                _record_plan(route_span, plan)
                for attempt, (node, card) in enumerate(plan.candidates, start=1):
                    if await self._stream_attempt(
                        request, plan, node, card, attempt, deadline, route_span, events, failures
                    ):
                        return
            await events.put(self._exhausted(plan, failures))
        except MeshError as err:
            await events.put(err)
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                events.put_nowait(None)

    async def _stream_attempt(
        self,
        request: inference_pb2.GenerateStreamRequest,
        plan: RoutePlan,
        node: Upstream,
        card: types_pb2.ModelCard,
        attempt: int,
        deadline: float,
        route_span: Any,
        events: asyncio.Queue[_StreamItem],
        failures: list[str],
    ) -> bool:
        """One upstream attempt; False means "fell back before committing, try the next"."""
        with self._attempt_span(node, card, attempt, True, request.sampling) as span:
            started = time.perf_counter()
            call = node.stub.GenerateStream(request, timeout=self._remaining(deadline))
            committed = False
            try:
                async for event in call:
                    if event.HasField("summary"):
                        event.summary.route.CopyFrom(self._route_info(plan, node, card, attempt))
                        self._record_reply(span, event.summary)
                        sc.record_route_result(
                            route_span,
                            attempts=attempt,
                            actual_cost_usd=event.summary.usage.cost_usd,
                            node=node.node_id,
                        )
                    elif not committed:
                        sc.record_first_chunk(span, time.perf_counter() - started)
                    committed = True
                    await events.put(event)
                return True
            except grpc.aio.AioRpcError as err:
                sc.mark_outcome(span, err.code().name, err.details() or "")
                if not committed and err.code() in _FALLBACK_CODES:
                    self._note_failure(node, err, failures)
                    return False
                if committed:
                    log.warning(
                        "stream %s from %s failed after the commit point: %s",
                        request.request_id,
                        node.node_id,
                        err.code().name,
                    )
                await events.put(err)
                return True
            finally:
                call.cancel()  # no-op when finished; aborts the node's generation otherwise

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

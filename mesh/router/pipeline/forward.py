"""Forward stage: one candidate loop, shared by unary calls and streams, up to the commit point.

Candidates are tried in the decision's order. Before the first event reaches the caller (the
commit point) a node that says it could not take the request (its status carries RetryInfo, or
the transport failed) or sends nothing within `first_token_timeout_s` is skipped for the next
one; after it, a failure ends the call with the upstream's status, never a splice of two models.
A frozen node is only noticed by these timeouts: gRPC keepalive took 25-45 s (STACK.md).

Each attempt is one CLIENT span (`chat <model>`) whose context travels in the call's metadata,
so the node's server span is its child; the channels carry no tracing interceptor of their own
(a second client span per attempt, measured as one of the router's costliest parts).
Deadlines travel as the remaining time; cancelling the call aborts the node's generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from mesh.contract.errors import UpstreamUnavailable
from mesh.contract.status import error_details, relayed_error
from mesh.router import upstream_calls
from mesh.router.accounting import Accounting
from mesh.router.breaker import BreakerBoard
from mesh.router.budget import BudgetExceeded
from mesh.router.catalog import Candidate
from mesh.router.pipeline.attempts import Attempts
from mesh.router.pipeline.context import RequestContext
from mesh.router.shared_budgets import BudgetStoreUnavailable
from mesh.router.upstream import UpstreamPool
from mesh.telemetry import semconv as sc
from mesh.v1 import inference_pb2

# Codes that say something about the node itself, so its breaker counts them. CANCELLED is
# here because the router's own cancellation surfaces as asyncio.CancelledError, never as a
# status: a CANCELLED status means the node dropped the call (a server stopping cancels its
# calls in flight).
_NODE_FAULT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)
# Without mesh details (a transport failure, a node going away, a foreign peer) only these mean
# "not taken here, try the next one".
_TRANSPORT_RETRY_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
)


_FINISH_TIMEOUT_S = 1.0
_T = TypeVar("_T")
_UNARY_METHOD = "/mesh.v1.InferenceService/Generate"
_STREAM_METHOD = "/mesh.v1.InferenceService/GenerateStream"


class Stalled(Exception):
    """An upstream sent nothing within the first-token or idle timeout."""


@dataclass(eq=False)
class Upstream:
    """The attempt that committed: its candidate, first event, live call and span."""

    cand: Candidate
    first: Any  # GenerateResponse (unary) or the first GenerateStreamResponse
    span: Span
    started: float
    call: Any = None  # the stream call; None for unary
    first_chunk_s: float | None = None

    def close(self) -> None:
        """Cancel what still runs upstream (aborts the node's generation) and end the span."""
        if self.call is not None:
            self.call.cancel()  # a no-op once the call has its status
        self.span.end()

    async def finish(self) -> None:
        """Read a stream that sent its summary to its end, so the node's call ends OK rather
        than cancelled (its status follows the summary at once)."""
        if self.call is None:
            return
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            await upstream_calls.read(self.call, _FINISH_TIMEOUT_S)


class Forwarder:
    """Sends a planned request to its candidates until one commits."""

    def __init__(
        self,
        pool: UpstreamPool,
        breakers: BreakerBoard,
        accounting: Accounting,
        *,
        first_token_timeout_s: float | None,
        idle_timeout_s: float | None,
        tracer: Tracer | None,
    ) -> None:
        self.pool = pool
        self.breakers = breakers
        self.accounting = accounting
        self.first_token_timeout_s = first_token_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.tracer = tracer or trace.get_tracer("mesh")

    # -- the loop ---------------------------------------------------------------------------
    async def unary(self, ctx: RequestContext, route_span: Span) -> Upstream:
        """The first candidate's whole reply (unary calls commit with their reply)."""

        async def attempt(cand: Candidate, request: Any, remaining_s: float, md: Any) -> Upstream:
            stub = self.pool.stub(cand.node_id, cand.address)
            started = time.perf_counter()
            call = stub.Generate(request, timeout=remaining_s, metadata=md)
            reply = await self._watched(cand, call, upstream_calls.reply(call))
            return Upstream(cand, reply, trace.INVALID_SPAN, started)

        return await self._commit(ctx, route_span, attempt)

    async def stream(self, ctx: RequestContext, route_span: Span) -> Upstream:
        """The first candidate to send an event within the first-token timeout."""

        async def attempt(cand: Candidate, request: Any, remaining_s: float, md: Any) -> Upstream:
            stub = self.pool.stub(cand.node_id, cand.address)
            started = time.perf_counter()
            call = stub.GenerateStream(request, timeout=remaining_s, metadata=md)
            try:
                first = await self._watched(
                    cand, call, self._read(call, self.first_token_timeout_s, ctx, "no first token")
                )
            except BaseException:
                call.cancel()
                raise
            if first is None:
                raise UpstreamUnavailable(
                    f"{cand.node_id} ended its stream without any event",
                    metadata={"node": cand.node_id, "model": cand.model},
                )
            return Upstream(cand, first, trace.INVALID_SPAN, started, call)

        upstream = await self._commit(ctx, route_span, attempt)
        upstream.first_chunk_s = time.perf_counter() - upstream.started
        sc.record_first_chunk(upstream.span, upstream.first_chunk_s)
        return upstream

    async def _commit(
        self,
        ctx: RequestContext,
        route_span: Span,
        attempt: Callable[[Candidate, Any, float, Any], Awaitable[Upstream]],
    ) -> Upstream:
        decision, attempts = ctx.decision, ctx.attempts
        assert decision is not None and attempts is not None
        for cand in decision.ordered:
            if not await self._claim(ctx, cand, attempts):
                continue
            attempts.made += 1
            span = self._attempt_span(ctx, cand, attempts.made, route_span)
            try:
                upstream = await attempt(
                    cand, _for_node(ctx, cand), ctx.remaining(), sc.outgoing_metadata(span)
                )
            except grpc.aio.AioRpcError as err:
                code = err.code()
                sc.mark_rpc_outcome(span, code.name, err.details() or "")
                span.end()
                if code in _NODE_FAULT_CODES:
                    self.breakers.record_failure(cand.node_id)
                details = error_details(err)
                if details.retryable if details.reason else code in _TRANSPORT_RETRY_CODES:
                    attempts.fail(cand, code.name, code)
                    attempts.retry_after_s = max(attempts.retry_after_s, details.retry_after_s or 0)
                    if code == grpc.StatusCode.UNAVAILABLE:
                        self.pool.mark_failed(cand.node_id)
                    continue
                raise relayed_error(details) from None
            except Stalled as stall:
                sc.mark_outcome(span, "DEADLINE_EXCEEDED", str(stall))
                span.end()
                self.breakers.record_failure(cand.node_id)
                attempts.fail(cand, str(stall), grpc.StatusCode.UNAVAILABLE)
                continue
            except UpstreamUnavailable as err:  # a node that broke the stream contract
                sc.mark_outcome(span, "UNAVAILABLE", err.message)
                span.end()
                self.breakers.record_failure(cand.node_id)
                attempts.fail(cand, err.message, grpc.StatusCode.UNAVAILABLE)
                continue
            except BaseException as exc:
                sc.mark_outcome(span, sc.code_of(exc))
                span.end()
                raise
            upstream.span = span
            return upstream
        raise attempts.exhausted(len(decision.ordered))

    async def _watched(self, cand: Candidate, call: Any, first: Awaitable[_T]) -> _T:
        """Await a call's reply or next event while the pool may give it up (its node froze:
        missed probes); a given-up call becomes Stalled: before the commit point the loop tries
        the next node, after it the stream ends UNAVAILABLE instead of waiting out the idle
        timeout."""
        self.pool.track(cand.node_id, call)
        try:
            got = await first
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.pool.untrack(cand.node_id, call) and not (task and task.cancelling()):
                raise Stalled(f"{cand.node_id} stopped answering its health probes") from None
            raise
        finally:
            self.pool.untrack(cand.node_id, call)
        self.pool.heard_from(cand.node_id)
        return got

    # -- after the commit point -------------------------------------------------------------
    async def next_event(
        self, ctx: RequestContext, upstream: Upstream
    ) -> inference_pb2.GenerateStreamResponse | None:
        """The next event of a committed stream (None at its end), within the idle timeout."""
        try:
            return await self._watched(
                upstream.cand,
                upstream.call,
                self._read(upstream.call, self.idle_timeout_s, ctx, "no event"),
            )
        except Stalled as stall:
            sc.mark_outcome(upstream.span, "DEADLINE_EXCEEDED", str(stall))
            self.breakers.record_failure(upstream.cand.node_id)
            raise UpstreamUnavailable(
                f"the upstream stream from {upstream.cand.node_id} stalled after the first token",
                metadata={"node": upstream.cand.node_id, "model": upstream.cand.model},
            ) from None
        except grpc.aio.AioRpcError as err:
            sc.mark_rpc_outcome(upstream.span, err.code().name, err.details() or "")
            if err.code() in _NODE_FAULT_CODES:
                self.breakers.record_failure(upstream.cand.node_id)
            raise relayed_error(error_details(err)) from None

    @staticmethod
    async def _read(
        call: Any, limit: float | None, ctx: RequestContext, what: str
    ) -> inference_pb2.GenerateStreamResponse | None:
        wait = None if limit is None or limit >= ctx.remaining() else limit
        try:
            event = await upstream_calls.read(call, wait)
        except TimeoutError:
            raise Stalled(f"{what} within {limit:g}s") from None
        return None if event is grpc.aio.EOF else event  # type: ignore[no-any-return]

    # -- helpers ----------------------------------------------------------------------------
    async def _claim(self, ctx: RequestContext, cand: Candidate, attempts: Attempts) -> bool:
        """Whether `cand` may be tried now: its breaker admits a call and the budget covers it."""
        assert ctx.decision is not None and ctx.hold is not None
        if not self.breakers.allow_request(cand.node_id):
            attempts.fail(cand, "breaker open")
            return False
        try:
            await self.accounting.raise_to(ctx.hold, ctx.decision.estimated_cost_for(cand))
        except BudgetExceeded:
            attempts.fail(cand, "over budget")
            return False
        except BudgetStoreUnavailable:
            attempts.fail(cand, "budget store unavailable")
            return False
        return True

    def _attempt_span(
        self, ctx: RequestContext, cand: Candidate, attempt: int, route_span: Span
    ) -> Span:
        sampling = ctx.request.sampling
        return sc.start_attempt_span(
            self.tracer,
            route_span,
            cand.model,
            cand.card.provider,
            attempt=attempt,
            node=cand.node_id,
            server_address=cand.address,
            rpc_method=_STREAM_METHOD if ctx.stream else _UNARY_METHOD,
            stream=ctx.stream,
            max_tokens=sampling.max_tokens if sampling.HasField("max_tokens") else None,
            temperature=sampling.temperature if sampling.HasField("temperature") else None,
        )


def _for_node(ctx: RequestContext, cand: Candidate) -> Any:
    """The request as the node must see it: a policy name or alias in `routing.model` names
    nothing the node serves, so the chosen model's id replaces it (a copy; rarely needed)."""
    request = ctx.request
    name = request.routing.model
    if not name or name == cand.model or name.lower() == "auto":
        return request
    copy = type(request)()
    copy.CopyFrom(request)  # type: ignore[arg-type]
    copy.routing.model = cand.model
    return copy

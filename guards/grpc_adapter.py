"""Wraps any mesh.v1.InferenceService servicer so every request and response passes the guards.

The one gRPC-aware module of the chain (with policy_service.py). Input guards finish before the
wrapped handler is called (or, with `parallel_input`, before any of its output is released);
output guards see the whole response, or a hold-back window on streams. A block aborts the call
with PERMISSION_DENIED / GUARD_BLOCKED, or ends a stream that has started with a summary whose
finish reason is GUARD_BLOCKED; either way the upstream iterator is closed so generation stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

from guards.audit import AuditLog
from guards.errors import GuardBlocked
from guards.guarded_request import GuardedRequest, Segments
from guards.policy_store import PolicyStore
from guards.proto_convert import verdicts_to_proto
from guards.streaming import StreamGuard
from guards.verdict import Action, ChainResult
from mesh.contract.status import stream_error_boundary, unary_error_boundary
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

# grpc ships no type information here, so the context is typed loosely.
Context: TypeAlias = Any
TenantOf = Callable[[Context], str]
# Told once per request whether the output guards let the response through (request id, allowed):
# the router caches an answer only then.
ResponseVerdictHook = Callable[[str, bool], None]


def default_tenant(context: Context) -> str:
    return "default"


def _blocked(result: ChainResult, stage: str) -> GuardBlocked:
    guards = [o.guard for o in result.outcomes if o.enforced and o.verdict.action is Action.BLOCK]
    return GuardBlocked(
        f"the {stage} was blocked by guard policy",
        metadata={
            "guards": ",".join(guards),
            "stage": stage,
            "policy_version": result.policy_version,
        },
    )


class GuardedInferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Delegates to `inner` with the guard steps around each call."""

    def __init__(
        self,
        inner: Any,
        store: PolicyStore,
        *,
        tenant_of: TenantOf = default_tenant,
        audit: AuditLog | None = None,
        on_response_verdict: ResponseVerdictHook | None = None,
    ) -> None:
        self.inner: Any = inner  # any InferenceService servicer (generated base is untyped)
        self.store = store
        self.tenant_of = tenant_of
        self.audit = audit
        self.on_response_verdict = on_response_verdict

    def _verdict(self, request_id: str, allowed: bool) -> None:
        if self.on_response_verdict is not None:
            self.on_response_verdict(request_id, allowed)

    def _request(self, request: Any, context: Context) -> tuple[GuardedRequest, Segments]:
        if not request.request_id:
            # Named here, not by the inner servicer: the verdict hook and the audit need it too.
            request.request_id = uuid.uuid4().hex
        system = "\n".join(m.content for m in request.messages if m.role == types_pb2.ROLE_SYSTEM)
        segments = Segments(
            [m.content for m in request.messages if m.role != types_pb2.ROLE_SYSTEM]
        )
        guarded = GuardedRequest(
            self.store, self.tenant_of(context), request.request_id, system, self.audit
        )
        return guarded, segments

    @staticmethod
    def _rewritten(request: Any, segments: Segments, result: ChainResult) -> Any:
        if not result.redactions:
            return request
        new = type(request)()
        new.CopyFrom(request)
        texts = iter(segments.rewrite(result.redactions))
        for message in new.messages:
            if message.role != types_pb2.ROLE_SYSTEM:
                message.content = next(texts)
        return new

    @unary_error_boundary
    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: Context
    ) -> inference_pb2.GenerateResponse:
        guarded, segments = self._request(request, context)
        allowed = False
        try:
            result = await self._generate(request, context, guarded, segments)
            allowed = True
            return result
        finally:
            self._verdict(guarded.request_id, allowed)

    async def _generate(
        self,
        request: inference_pb2.GenerateRequest,
        context: Context,
        guarded: GuardedRequest,
        segments: Segments,
    ) -> inference_pb2.GenerateResponse:
        if guarded.policy.policy.parallel_input:
            # Start generation now; nothing is returned before the input verdict.
            upstream = asyncio.ensure_future(self.inner.Generate(request, context))
            checked = await guarded.check_input(segments.joined)
            if checked.blocked or checked.redactions:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await upstream
                if checked.blocked:
                    raise _blocked(checked, "request")
                response = await self.inner.Generate(
                    self._rewritten(request, segments, checked), context
                )
            else:
                response = await upstream
        else:
            checked = await guarded.check_input(segments.joined)
            if checked.blocked:
                raise _blocked(checked, "request")
            response = await self.inner.Generate(
                self._rewritten(request, segments, checked), context
            )
        out = await guarded.check_output(response.text)
        if out.blocked:
            raise _blocked(out, "response")
        result = inference_pb2.GenerateResponse()
        result.CopyFrom(response)
        result.text = out.text
        result.guard_verdicts.extend(
            verdicts_to_proto((*checked.outcomes, *out.outcomes), guarded.version)
        )
        return result

    @stream_error_boundary
    async def GenerateStream(
        self, request: inference_pb2.GenerateStreamRequest, context: Context
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        guarded, segments = self._request(request, context)
        parallel = guarded.policy.policy.parallel_input
        input_task: asyncio.Future[ChainResult] = asyncio.ensure_future(
            guarded.check_input(segments.joined)
        )
        if not parallel:
            checked = await input_task
            if checked.blocked:
                raise _blocked(checked, "request")
            request = self._rewritten(request, segments, checked)
        upstream = self.inner.GenerateStream(request, context)
        window = guarded.stream_guard()
        awaiting_input = parallel
        first: asyncio.Future[Any] | None = None
        summarised = False  # the final summary was built: the whole response was seen
        try:
            if parallel:
                # Generation runs while the input guards do; a block must not wait for the
                # first token (a long prefill), so whichever finishes first decides.
                first = asyncio.ensure_future(anext(upstream))
                await asyncio.wait({first, input_task}, return_when=asyncio.FIRST_COMPLETED)
                if input_task.done() and input_task.result().blocked:
                    raise _blocked(input_task.result(), "request")
            while True:
                try:
                    if first is not None:
                        step_event, first = first, None
                        event = await step_event
                    else:
                        event = await anext(upstream)
                except StopAsyncIteration:
                    break
                if awaiting_input:
                    # Parallel mode: generation started; nothing is released before the verdict.
                    awaiting_input = False
                    checked = await input_task
                    if checked.blocked:
                        raise _blocked(checked, "request")
                    if checked.redactions:
                        # It began on unredacted input: restart it on the redacted one.
                        await _close(upstream)
                        upstream = self.inner.GenerateStream(
                            self._rewritten(request, segments, checked), context
                        )
                        continue
                if event.HasField("delta"):
                    step = await window.push(event.delta.text)
                    if step.text:
                        yield _delta(step.text)
                    if step.blocked:
                        # Abort first: when the caller sees the end, nothing runs upstream.
                        await _close(upstream)
                        yield await self._summary(window, guarded, None, input_task)
                        return
                else:
                    step = await window.finish()
                    if step.text:
                        yield _delta(step.text)
                    summary = await self._summary(window, guarded, event.summary, input_task)
                    summarised = True
                    yield summary
                    return
            checked = await input_task
            if checked.blocked:
                raise _blocked(checked, "request")
            step = await window.finish()
            if step.text:
                yield _delta(step.text)
            summary = await self._summary(window, guarded, None, input_task)
            summarised = True
            yield summary
        finally:
            self._verdict(guarded.request_id, summarised and not window.blocked)
            if first is not None:
                # A pending read is cancelled, which ends the upstream generator (its `finally`
                # aborts the engine request); a finished one is collected. Closing is then a
                # no-op.
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                    await first
            await _close(upstream)
            if not input_task.done():
                input_task.cancel()

    async def _summary(
        self,
        window: StreamGuard,
        guarded: GuardedRequest,
        upstream_summary: inference_pb2.GenerationSummary | None,
        input_task: asyncio.Future[ChainResult],
    ) -> inference_pb2.GenerateStreamResponse:
        """The final event: upstream's summary (if any) with the guards' verdicts attached."""
        out = inference_pb2.GenerationSummary(request_id=guarded.request_id)
        if upstream_summary is not None:
            out.CopyFrom(upstream_summary)
        if window.blocked:
            out.finish_reason = types_pb2.FINISH_REASON_GUARD_BLOCKED
        await guarded.record(window.outcomes, window.released_text)
        input_outcomes = input_task.result().outcomes
        out.guard_verdicts.extend(
            verdicts_to_proto((*input_outcomes, *window.outcomes), guarded.version)
        )
        return inference_pb2.GenerateStreamResponse(summary=out)

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: Context
    ) -> inference_pb2.ListModelsResponse:
        response: inference_pb2.ListModelsResponse = await self.inner.ListModels(request, context)
        return response


def _delta(text: str) -> inference_pb2.GenerateStreamResponse:
    return inference_pb2.GenerateStreamResponse(delta=inference_pb2.TextDelta(text=text))


async def _close(upstream: AsyncIterator[Any]) -> None:
    """Close the upstream generator: the node's `finally` aborts the engine request."""
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def guard_inference_servicer(
    inner: Any,
    store: PolicyStore,
    *,
    tenant_of: TenantOf = default_tenant,
    audit: AuditLog | None = None,
    on_response_verdict: ResponseVerdictHook | None = None,
) -> GuardedInferenceServicer:
    """The servicer to register instead of `inner`: same RPCs, guarded."""
    return GuardedInferenceServicer(
        inner, store, tenant_of=tenant_of, audit=audit, on_response_verdict=on_response_verdict
    )

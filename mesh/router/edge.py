"""The router's edge: the one place a call becomes a RequestContext.

A `grpc.aio.ServerInterceptor` sees metadata, not messages (STYLE.md), so it authenticates there
(an unknown key is refused before the request is even handed to a handler) and then rebuilds the
method handler so the wrapped behaviour sees the message: it validates the request before any
guard runs, takes or mints the request id, fixes the deadline, and hands the servicer the context
through `current_request()`. Identity is checked and the id minted once per call, here only.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from mesh.config import RouterConfig
from mesh.contract.errors import FieldViolation, InvalidRequest, MeshError
from mesh.contract.status import abort_with_error, to_status
from mesh.contract.validation import validate_generation
from mesh.router.auth import ApiKeyAuth, Principal
from mesh.router.pipeline.context import GenerationRequest, RequestContext
from mesh.telemetry import semconv as sc

INFERENCE_PREFIX = "/mesh.v1.InferenceService/"
_GENERATE = INFERENCE_PREFIX + "Generate"
_GENERATE_STREAM = INFERENCE_PREFIX + "GenerateStream"
Context = Any  # grpc.aio.ServicerContext; grpc ships no usable generic type here

_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("mesh_request")


def current_request() -> RequestContext:
    """The context the edge built for the call being served (in its handler's task)."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "no RequestContext: the router's EdgeInterceptor must wrap InferenceService"
        ) from None


@dataclass(frozen=True)
class EdgeLimits:
    """What the edge enforces before any stage runs (from RouterConfig)."""

    default_timeout_s: float
    max_prompt_chars: int

    @classmethod
    def of(cls, config: RouterConfig) -> EdgeLimits:
        return cls(config.default_timeout_s, config.max_prompt_chars)


def begin(
    request: GenerationRequest,
    principal: Principal,
    *,
    stream: bool,
    time_remaining: float | None,
    limits: EdgeLimits,
) -> RequestContext:
    """Validate and name a request; the same for every door (gRPC, HTTP).

    The size bound comes first: everything after it (validation, guards, cache keys, the tier
    estimate) runs on the event loop or holds the GIL, so a huge prompt must cost no more than
    this sum before it is refused.
    """
    chars = sum(len(m.content) for m in request.messages)
    if chars > limits.max_prompt_chars:
        raise InvalidRequest(
            f"the messages hold {chars} characters, over this router's limit of "
            f"{limits.max_prompt_chars}",
            reason="PROMPT_TOO_LARGE",
            metadata={"chars": str(chars), "limit": str(limits.max_prompt_chars)},
            violations=[
                FieldViolation("messages", f"at most {limits.max_prompt_chars} characters")
            ],
        )
    validate_generation(request)
    if not request.request_id:
        request.request_id = uuid.uuid4().hex
    budget = limits.default_timeout_s if time_remaining is None else min(time_remaining, 1e6)
    # On the door's server span, so `mesh trace --request ID` finds the trace.
    sc.tag_request(request.request_id, tenant=principal.tenant)
    return RequestContext(
        request_id=request.request_id,
        principal=principal,
        request=request,
        stream=stream,
        deadline=time.monotonic() + budget,
    )


def _rejecting(handler: grpc.RpcMethodHandler, error: MeshError) -> grpc.RpcMethodHandler:
    status = to_status(error)

    async def unary(request: Any, context: Context) -> Any:
        await context.abort_with_status(status)

    async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
        await context.abort_with_status(status)
        yield  # pragma: no cover - makes this an async generator, as the method expects

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class EdgeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticate every InferenceService call, then build its RequestContext."""

    def __init__(self, auth: ApiKeyAuth, limits: EdgeLimits) -> None:
        self.auth = auth
        self.limits = limits

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(INFERENCE_PREFIX):
            return handler
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        try:
            principal = self.auth.authenticate_metadata(metadata)
        except MeshError as err:
            return _rejecting(handler, err)
        if method == _GENERATE:
            return self._unary(handler, principal)
        if method == _GENERATE_STREAM:
            return self._stream(handler, principal)
        return handler  # ListModels: authenticated, nothing to build

    def _begin(self, request: Any, context: Context, principal: Principal, stream: bool) -> None:
        _current.set(
            begin(
                request,
                principal,
                stream=stream,
                time_remaining=context.time_remaining(),
                limits=self.limits,
            )
        )

    def _unary(self, handler: grpc.RpcMethodHandler, principal: Principal) -> grpc.RpcMethodHandler:
        behaviour = handler.unary_unary

        async def unary(request: Any, context: Context) -> Any:
            try:
                self._begin(request, context, principal, stream=False)
            except MeshError as err:
                await abort_with_error(context, err)
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _stream(
        self, handler: grpc.RpcMethodHandler, principal: Principal
    ) -> grpc.RpcMethodHandler:
        behaviour = handler.unary_stream

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                self._begin(request, context, principal, stream=True)
            except MeshError as err:
                await abort_with_error(context, err)
            # Each RPC runs in its own task, so the context variable set above lives exactly
            # as long as this call; the servicer reads it before its first yield.
            async for event in behaviour(request, context):
                yield event

        return grpc.unary_stream_rpc_method_handler(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

"""RPC spans and W3C trace-context propagation from opentelemetry-instrumentation-grpc.

The package's grpc.aio server interceptor (server spans, context extracted from `traceparent`)
and client interceptors (client spans, context injected) do the work; this module only picks
what is traced and adds one thing the package misses: handlers that end a call with
`abort_with_status` (every mesh error does, via mesh.contract.status) bypass the package's
context wrapper, so its server span would say OK. `_StatusRecorder` reads the final code back
from the context and applies the server-fault rule. Health checks, reflection and the mesh's
periodic probes (ListModels polls, registry heartbeats) are not traced. The package records
every exception leaving a handler with its message and stack trace and has no switch for it:
mesh.telemetry.redaction cuts those events down before any exporter sees them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import (  # type: ignore[import-untyped]
    aio_client_interceptors,
    aio_server_interceptor,
)
from opentelemetry.instrumentation.grpc.filters import (  # type: ignore[import-untyped]
    any_of,
    full_method_name,
    health_check,
    service_prefix,
)
from opentelemetry.trace import TracerProvider

from mesh.telemetry import semconv as sc
from mesh.telemetry.safety import safe_invoke

REFLECTION_PREFIX = "grpc.reflection."
# Calls a router or node makes every few seconds on its own (a router polls each static node's
# ListModels for cards and load; a registered node heartbeats). Traced, each would be a trace
# of its own, burying the request traces an SRE looks for (`mesh trace --last N`).
PROBE_METHODS = (
    "/mesh.v1.InferenceService/ListModels",
    "/mesh.v1.RegistryService/Heartbeat",
)

Filter = Callable[[Any], bool]


@dataclass(frozen=True)
class _Method:
    """What the package's predicates read of call details: the method name only."""

    method: str


def traced_calls() -> Filter:
    """True for calls that get spans: everything but health, reflection and periodic probes.

    The package's predicates decide, once per method name: evaluated per call they re-split the
    name in every predicate, ~7% of the router's GIL time at concurrency 32 (py-spy).
    """
    untraced: Filter = any_of(
        health_check(),
        service_prefix(REFLECTION_PREFIX),
        *(full_method_name(method) for method in PROBE_METHODS),
    )

    @functools.lru_cache(maxsize=512)
    def traced_method(method: str | bytes) -> bool:
        # grpc.aio client call details carry bytes (grpc/grpc#31092).
        name = method.decode() if isinstance(method, bytes) else method
        return not untraced(_Method(name))

    def traced(call_details: Any) -> bool:
        return traced_method(call_details.method)

    return traced


def server_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """Pass to create_server(interceptors=...) first, so tracing is the outermost interceptor."""
    traced = traced_calls()
    otel: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=tracer_provider, filter_=traced
    )
    return [otel, _StatusRecorder(traced)]


def client_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """Pass to grpc.aio channels: a client span per call, `traceparent` injected into metadata.

    The package marks every non-OK client call ERROR, as the gRPC conventions ask for CLIENT
    spans; the mesh's own attempt spans apply the server-fault rule instead.
    """
    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=tracer_provider, filter_=traced_calls()
    )
    return interceptors


def instrumented_channel(
    target: str,
    *,
    options: Sequence[tuple[str, Any]] | None = None,
    tracer_provider: TracerProvider | None = None,
    extra_interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """An insecure grpc.aio channel with the tracing interceptors first."""
    if options is None:
        from mesh.contract.serving import channel_options

        options = channel_options()
    return grpc.aio.insecure_channel(
        target,
        options=list(options),
        interceptors=[*client_interceptors(tracer_provider), *extra_interceptors],
    )


def _record_code(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    code = context.code()
    if not isinstance(code, grpc.StatusCode) or code == grpc.StatusCode.OK:
        return
    span = trace.get_current_span()
    span.set_attribute(sc.RPC_GRPC_STATUS_CODE, code.value[0])
    sc.mark_outcome(span, code.name)


def _record_crash(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        # The caller went away or the deadline passed: an outcome, not a server fault.
        sc.mark_outcome(trace.get_current_span(), "CANCELLED")
        return
    code = context.code()
    if isinstance(code, grpc.StatusCode) and code != grpc.StatusCode.OK:
        _record_code(context)
        return
    # An exception nobody turned into a status: grpc answers UNKNOWN.
    span = trace.get_current_span()
    span.set_attribute(sc.RPC_GRPC_STATUS_CODE, grpc.StatusCode.UNKNOWN.value[0])
    sc.mark_outcome(span, "UNKNOWN")


class _StatusRecorder(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Sits right inside the tracing interceptor and records the call's final status code."""

    def __init__(self, traced: Filter) -> None:
        self._traced = traced

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not safe_invoke(self._traced, handler_call_details):
            return handler
        return _wrap(handler)


def _wrap(handler: Any) -> Any:
    """Rebuild the handler with a wrapped behaviour of the same arity."""
    if handler.response_streaming:
        inner = handler.unary_stream or handler.stream_stream
        if not inspect.isasyncgenfunction(inner):
            return handler  # a sync handler: nothing of the mesh's, left as it is

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in inner(request, context):
                    yield response
            except BaseException as exc:
                safe_invoke(_record_crash, context, exc)
                raise
            safe_invoke(_record_code, context)

        factory = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return factory(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    unary_inner = handler.unary_unary or handler.stream_unary
    if not inspect.iscoroutinefunction(unary_inner):
        return handler

    async def unary(request: Any, context: Any) -> Any:
        try:
            response = await unary_inner(request, context)
        except BaseException as exc:
            safe_invoke(_record_crash, context, exc)
            raise
        safe_invoke(_record_code, context)
        return response

    unary_factory = (
        grpc.unary_unary_rpc_method_handler
        if handler.unary_unary
        else grpc.stream_unary_rpc_method_handler
    )
    return unary_factory(
        unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )

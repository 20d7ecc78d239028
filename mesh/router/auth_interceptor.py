"""Rejects InferenceService calls without a valid API key before any guard or route runs.

An interceptor, not a servicer wrapper, so an unauthenticated call never reaches the guard
chain (no audit noise from strangers) and health/reflection stay open to probes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from mesh.contract.errors import MeshError
from mesh.contract.status import to_status
from mesh.router.auth import ApiKeyAuth, Principal

INFERENCE_PREFIX = "/mesh.v1.InferenceService/"
Context = Any  # grpc.aio.ServicerContext


def principal_of(auth: ApiKeyAuth) -> Callable[[Context], Principal]:
    """Resolve a call's principal from its metadata (hashing a key costs microseconds)."""

    def resolve(context: Context) -> Principal:
        return auth.authenticate_metadata(context.invocation_metadata())

    return resolve


def _rejecting(handler: grpc.RpcMethodHandler, error: MeshError) -> grpc.RpcMethodHandler:
    status = to_status(error)

    async def unary(request: Any, context: Context) -> Any:
        await context.abort_with_status(status)

    async def streaming(request: Any, context: Context) -> Any:
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


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """UNAUTHENTICATED (with ErrorInfo) for inference calls whose key is missing or unknown."""

    def __init__(self, auth: ApiKeyAuth) -> None:
        self.auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not self.auth.enabled or not method.startswith(INFERENCE_PREFIX):
            return handler
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        try:
            self.auth.authenticate_metadata(metadata)
        except MeshError as err:
            return _rejecting(handler, err)
        return handler

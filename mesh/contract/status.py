"""The transport edge: MeshError <-> gRPC status with google.rpc details.

Servers call `abort_with_error` (or wrap handlers in `error_boundary`); clients call
`error_details` on a failed call. Nothing else in the code base builds or parses status details.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mesh.contract.errors import (
    ERROR_DOMAIN,
    Code,
    ErrorDetails,
    FieldViolation,
    MeshError,
)

log = logging.getLogger(__name__)

_GRPC_CODE = {code: getattr(grpc.StatusCode, code.value) for code in Code}
_RPC_CODE = {code: getattr(code_pb2, code.value) for code in Code}


def to_status(error: MeshError) -> grpc.Status:
    """Build the rich status for an error: ErrorInfo always, BadRequest and RetryInfo if known."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    details = [info]
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    if error.retry_after_s is not None or error.retryable:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int((error.retry_after_s or 0.0) * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    proto = status_pb2.Status(code=_RPC_CODE[error.code], message=error.message, details=packed)
    return rpc_status.to_status(proto)


async def abort_with_error(
    context: grpc.aio.ServicerContext[Any, Any], error: MeshError
) -> NoReturn:
    """End the current call with the error's status (raises, as grpc.aio's abort does)."""
    await context.abort_with_status(to_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


_DETAILS_KEY = "grpc-status-details-bin"


def _status_proto(error: grpc.aio.AioRpcError | grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a server attached to a failed call, if any.

    grpc_status.rpc_status.from_call wants a sync Call (or an awaitable aio Call); an
    AioRpcError already holds its trailing metadata, so read the details key directly.
    """
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def error_details(error: grpc.aio.AioRpcError | grpc.RpcError) -> ErrorDetails:
    """Parse a failed call's status and google.rpc details into plain data."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    parsed = ErrorDetails(code=code.name, message=message or "")
    status = _status_proto(error)
    if status is None:
        return parsed
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            parsed.reason, parsed.domain = info.reason, info.domain
            parsed.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            parsed.violations = [
                FieldViolation(v.field, v.description) for v in bad.field_violations
            ]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            parsed.retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
            parsed.retryable = True
    return parsed


_CODE_BY_NAME = {code.value: code for code in Code}


def relayed_error(details: ErrorDetails) -> MeshError:
    """An upstream's failure as this process's own error: same code, message and details."""
    return MeshError(
        details.message,
        code=_CODE_BY_NAME.get(details.code, Code.UNKNOWN),
        reason=details.reason or details.code,
        metadata=details.metadata,
        violations=details.violations,
        retry_after_s=details.retry_after_s,
        retryable=details.retryable,
    )


def passthrough_status(error: grpc.aio.AioRpcError) -> grpc.Status:
    """Relay an upstream failure unchanged: same code, message and details."""
    proto = _status_proto(error)
    if proto is None:
        proto = status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    return rpc_status.to_status(proto)


_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def _internal(method: str, exc: BaseException) -> MeshError:
    # The traceback goes to the server log only; the client gets a fixed sentence.
    log.error("unhandled error in %s", method, exc_info=exc)
    return MeshError("internal error; see the server log", reason="INTERNAL")


def unary_error_boundary(
    fn: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    """Turn MeshError (and any stray exception) from a unary handler into a rich status."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await fn(self, request, context)
        except MeshError as err:
            await abort_with_error(context, err)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the error boundary: no stack trace ever reaches a client
            await abort_with_error(context, _internal(fn.__qualname__, exc))

    return wrapper


def stream_error_boundary(
    fn: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """The same boundary for server-streaming handlers."""

    @functools.wraps(fn)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for item in fn(self, request, context):
                yield item
        except MeshError as err:
            await abort_with_error(context, err)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with_error(context, _internal(fn.__qualname__, exc))

    return wrapper

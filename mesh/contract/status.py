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


# A status leaves in the trailers: grpc-message (percent-encoded: up to 3 bytes per byte) and
# grpc-status-details-bin (base64 of the message again plus the details). A client refuses
# trailers above 8 KiB (soft) / 16 KiB (hard, grpc.max_metadata_size), and then sees
# RESOURCE_EXHAUSTED "Stream removed" instead of the error. These bounds keep the worst case
# (all non-ASCII, every part full) near 6.5 KiB, whatever raised the error; the texts of
# ordinary errors are far below them.
MAX_MESSAGE_BYTES = 768
MAX_TEXT_BYTES = 512  # one metadata value, one violation description
MAX_KEY_BYTES = 64  # one metadata key, one violation field
MAX_PART_BYTES = 1024  # all metadata together; all violations together
_CUT = "…"


def clip_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (marker included), never inside a character."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    room = max(limit - _nbytes(_CUT), 0)
    return encoded[:room].decode("utf-8", "ignore") + _CUT


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def _bounded_metadata(metadata: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used = 0
    for key, value in metadata.items():
        k, v = clip_utf8(key, MAX_KEY_BYTES), clip_utf8(value, MAX_TEXT_BYTES)
        used += _nbytes(k) + _nbytes(v)
        if used > MAX_PART_BYTES:
            break
        out[k] = v
    return out


def _bounded_violations(violations: list[FieldViolation]) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    used = 0
    for i, violation in enumerate(violations):
        field = clip_utf8(violation.field, MAX_KEY_BYTES)
        description = clip_utf8(violation.description, MAX_TEXT_BYTES)
        used += _nbytes(field) + _nbytes(description)
        if used > MAX_PART_BYTES:
            out.append(FieldViolation("…", f"{len(violations) - i} more not shown"))
            break
        out.append(FieldViolation(field, description))
    return out


def to_status(error: MeshError) -> grpc.Status:
    """Build the rich status for an error: ErrorInfo always, BadRequest and RetryInfo if known.

    Every text is bounded (see MAX_MESSAGE_BYTES) so the status always reaches the client.
    """
    info = error_details_pb2.ErrorInfo(
        reason=clip_utf8(error.reason, MAX_KEY_BYTES),
        domain=ERROR_DOMAIN,
        metadata=_bounded_metadata(error.metadata),
    )
    details = [info]
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in _bounded_violations(error.violations)
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
    proto = status_pb2.Status(
        code=_RPC_CODE[error.code],
        message=clip_utf8(error.message, MAX_MESSAGE_BYTES),
        details=packed,
    )
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

"""MeshError -> HTTP status and OpenAI's error envelope: the one status table of the HTTP door
(the Anthropic envelope in `messages_response` reads the same table).

`{"error": {"message", "type", "param", "code"}}` with the status an OpenAI client expects, so
its own error classes fire (openai.RateLimitError on 429 ...). `code` is OpenAI's where one
exists (`model_not_found`, `context_length_exceeded`), else the mesh reason in lower case;
`mesh` adds the reason and its metadata (the same safe details gRPC callers get in ErrorInfo).

`x-should-retry` carries the error's retryability as data: the openai and anthropic SDKs obey
it over their own guess, so a spent budget or a passed deadline (429, 504) is not retried, and
an overloaded node's `Retry-After` is.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mesh.contract.errors import Code, MeshError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpError:
    """How one kind of failure reads over HTTP."""

    status: int
    type: str
    code: str | None = None  # None: the mesh reason in lower case


_BY_CODE: dict[Code, HttpError] = {
    Code.INVALID_ARGUMENT: HttpError(400, "invalid_request_error"),
    Code.FAILED_PRECONDITION: HttpError(400, "invalid_request_error"),
    Code.OUT_OF_RANGE: HttpError(400, "invalid_request_error"),
    Code.UNAUTHENTICATED: HttpError(401, "authentication_error", "invalid_api_key"),
    Code.PERMISSION_DENIED: HttpError(403, "permission_error"),
    Code.NOT_FOUND: HttpError(404, "not_found_error"),
    Code.ALREADY_EXISTS: HttpError(409, "conflict_error"),
    Code.ABORTED: HttpError(409, "conflict_error"),
    Code.RESOURCE_EXHAUSTED: HttpError(429, "rate_limit_error"),
    Code.CANCELLED: HttpError(499, "client_closed_request"),  # nobody reads it: the caller left
    Code.INTERNAL: HttpError(500, "server_error"),
    Code.UNKNOWN: HttpError(500, "server_error"),
    Code.DATA_LOSS: HttpError(500, "server_error"),
    Code.UNIMPLEMENTED: HttpError(501, "server_error"),
    Code.UNAVAILABLE: HttpError(503, "server_error"),
    Code.DEADLINE_EXCEEDED: HttpError(504, "timeout_error"),
}
# Reasons whose status or code differs from their gRPC code's.
_BY_REASON: dict[str, HttpError] = {
    "GUARD_BLOCKED": HttpError(403, "permission_error", "guard_blocked"),
    "MODEL_NOT_FOUND": HttpError(404, "invalid_request_error", "model_not_found"),
    "CONTEXT_WINDOW_EXCEEDED": HttpError(400, "invalid_request_error", "context_length_exceeded"),
    "BUDGET_EXCEEDED": HttpError(429, "insufficient_quota", "budget_exceeded"),
    "REQUEST_TOO_LARGE": HttpError(413, "invalid_request_error", "request_too_large"),
    "UNSUPPORTED_CONTENT_ENCODING": HttpError(
        415, "invalid_request_error", "unsupported_content_encoding"
    ),
}
# Field names of the mesh contract -> the OpenAI parameter a client sent.
_PARAM_PREFIXES = (("sampling.", ""), ("routing.model", "model"), ("routing.", ""))


class RequestTooLarge(MeshError):
    """A body over `router.http.max_body_bytes`; refused before it is parsed."""

    code = Code.RESOURCE_EXHAUSTED
    reason = "REQUEST_TOO_LARGE"


class UnsupportedContentEncoding(MeshError):
    """A body compressed in a coding the front does not read (it is not parsed as JSON)."""

    code = Code.INVALID_ARGUMENT
    reason = "UNSUPPORTED_CONTENT_ENCODING"


def http_error(err: MeshError) -> HttpError:
    return _BY_REASON.get(err.reason) or _BY_CODE.get(err.code, _BY_CODE[Code.INTERNAL])


def openai_param(field: str) -> str:
    """`sampling.temperature` -> `temperature`; names the door itself used pass unchanged."""
    for prefix, replacement in _PARAM_PREFIXES:
        if field.startswith(prefix):
            return replacement + field[len(prefix) :]
    return field


def error_code(err: MeshError) -> str:
    return http_error(err).code or err.reason.lower()


def error_param(err: MeshError) -> str | None:
    """The parameter at fault (the first, when several are)."""
    return openai_param(err.violations[0].field) if err.violations else None


def error_body(err: MeshError) -> dict[str, object]:
    """The envelope's `error` object (an SSE error event carries the same)."""
    return {
        "message": err.message,
        "type": http_error(err).type,
        "param": error_param(err),
        "code": error_code(err),
        "mesh": {"reason": err.reason, "metadata": err.metadata},
    }


def error_headers(err: MeshError, request_id: str | None) -> dict[str, str]:
    headers = {"x-should-retry": "true" if err.retryable else "false"}
    if request_id:
        headers["x-request-id"] = request_id
    if err.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after_s)))
        headers["retry-after-ms"] = str(max(0, round(err.retry_after_s * 1000)))
    return headers


def error_response(err: MeshError, request_id: str | None = None) -> Response:
    return Response(
        json.dumps({"error": error_body(err)}, ensure_ascii=False).encode(),
        status_code=http_error(err).status,
        headers=error_headers(err, request_id),
        media_type="application/json",
    )


def internal_error(where: str, exc: BaseException) -> MeshError:
    """A bug: the traceback goes to the server log, the client gets a fixed sentence."""
    log.error("unhandled error in %s", where, exc_info=exc)
    return MeshError("internal error; see the server log", reason="INTERNAL")


async def framework_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong method) and stray errors, as envelopes."""
    if isinstance(exc, HTTPException):
        # An unknown path is not_found_error; a wrong method (405) is the client's error too.
        code = (
            Code.NOT_FOUND
            if exc.status_code == 404
            else Code.INVALID_ARGUMENT
            if exc.status_code < 500
            else Code.UNIMPLEMENTED
        )
        err = MeshError(str(exc.detail), code=code, reason=f"HTTP_{exc.status_code}")
        response = error_response(err)
        response.status_code = exc.status_code  # 405 stays 405
        response.headers.update(exc.headers or {})  # e.g. Allow
        return response
    return error_response(internal_error(request.url.path, exc))

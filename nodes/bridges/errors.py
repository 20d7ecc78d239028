"""Provider failures -> MeshError: one table from HTTP status to gRPC code and reason.

Every error names the provider and model in its metadata. Provider messages are passed on only
after scrubbing (a 401 body may quote part of the key, so auth errors get a fixed sentence),
and never longer than one line.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import httpx
import openai

from mesh.contract.errors import Code, MeshError

_MAX_MESSAGE = 240
# Credentials as providers echo them: "sk-...", "sk-ant-...", "Bearer ...", "x-api-key: ...".
_CREDENTIAL = re.compile(
    r"(sk-[A-Za-z0-9_\-*.]{4,}|Bearer\s+\S+|x-api-key[\"']?\s*[:=]\s*\S+)", re.IGNORECASE
)

_STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError)
# Mid-stream, the SDKs let httpx's own transport errors through unwrapped.
_TIMEOUTS = (openai.APITimeoutError, anthropic.APITimeoutError, httpx.TimeoutException)
_CONNECTION_ERRORS = (openai.APIConnectionError, anthropic.APIConnectionError, httpx.TransportError)


@dataclass(frozen=True)
class _Mapping:
    code: Code
    reason: str
    retryable: bool


# Anthropic reports some failures as an SSE `error` event inside a 200 stream; its error type
# says which HTTP status it stands for.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _effective_status(status: int, body: Any) -> int:
    if status < 400 and isinstance(body, Mapping):
        inner = body.get("error", body)
        kind = inner.get("type") if isinstance(inner, Mapping) else None
        return _ERROR_TYPE_STATUS.get(str(kind), 500)
    return status


def _for_status(status: int) -> _Mapping:
    if status in (401, 403):
        code = Code.UNAUTHENTICATED if status == 401 else Code.PERMISSION_DENIED
        return _Mapping(code, "UPSTREAM_AUTH", False)
    if status == 404:
        return _Mapping(Code.NOT_FOUND, "UPSTREAM_NOT_FOUND", False)
    if status == 408:
        return _Mapping(Code.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT", False)
    if status == 504:
        # A gateway timing out is transient (unlike our own deadline): worth another attempt.
        return _Mapping(Code.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT", True)
    if status == 429:
        return _Mapping(Code.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED", True)
    if status >= 500:
        return _Mapping(Code.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", True)
    if status in (400, 413, 422):
        return _Mapping(Code.INVALID_ARGUMENT, "UPSTREAM_INVALID_REQUEST", False)
    return _Mapping(Code.FAILED_PRECONDITION, "UPSTREAM_REJECTED", False)


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the provider asks us to wait: `retry-after-ms`, else `Retry-After` (both forms)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def scrub(text: str, secret: str | None = None) -> str:
    """One line without credentials, at most a few hundred characters."""
    if secret:
        text = text.replace(secret, "[redacted]")
    text = _CREDENTIAL.sub("[redacted]", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _provider_message(body: Any) -> str:
    """The human part of a provider error body (OpenAI and Anthropic shapes)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return body if isinstance(body, str) else ""


def is_provider_error(exc: BaseException) -> bool:
    """Whether `exc` is an SDK error this module maps."""
    return isinstance(exc, (*_STATUS_ERRORS, *_CONNECTION_ERRORS))


def _dropped_connection(exc: BaseException) -> bool:
    """Whether an SDK "timeout" is really a refused, reset or closed connection.

    The SDKs' aiohttp transport (httpx-aiohttp) reports every aiohttp.ClientConnectionError as
    httpx.ConnectTimeout, so a dead upstream would read as a slow one (not retried, the wrong
    code); the aiohttp error is still in the chain of causes, and its own timeouts are
    TimeoutErrors."""
    cause: BaseException | None = exc
    for _ in range(8):  # the SDK error, httpx's, aiohttp's: a short chain
        if cause is None:
            return False
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def map_provider_error(
    exc: BaseException, *, provider: str, model: str, secret: str | None = None
) -> MeshError:
    """The MeshError for an SDK exception (status, timeout or connection failure)."""
    metadata = {"provider": provider, "model": model}
    if isinstance(exc, _STATUS_ERRORS):
        status = _effective_status(exc.status_code, exc.body)
        mapped = _for_status(status)
        metadata["http_status"] = str(status)
        if mapped.reason == "UPSTREAM_AUTH":
            # The body may quote (part of) the key: say only what happened.
            message = f"{provider} rejected the bridge's API key (HTTP {status})"
        else:
            detail = scrub(_provider_message(exc.body) or exc.message, secret)
            message = f"{provider} returned HTTP {status}" + (f": {detail}" if detail else "")
        headers = exc.response.headers if exc.response is not None else None
        wait = retry_after_s(headers) if status == 429 else None
        if status == 429 and wait is None:
            wait = 1.0  # a 429 always tells the caller to come back, even without a header
        return MeshError(
            message,
            code=mapped.code,
            reason=mapped.reason,
            retryable=mapped.retryable,
            metadata=metadata,
            retry_after_s=wait,
        )
    if isinstance(exc, _TIMEOUTS) and not _dropped_connection(exc):
        return MeshError(
            f"{provider} did not answer in time",
            code=Code.DEADLINE_EXCEEDED,
            reason="UPSTREAM_TIMEOUT",
            retryable=False,
            metadata=metadata,
        )
    if isinstance(exc, _CONNECTION_ERRORS):
        return MeshError(
            f"cannot reach {provider}: {scrub(str(exc), secret)}",
            code=Code.UNAVAILABLE,
            reason="UPSTREAM_UNAVAILABLE",
            retryable=True,
            metadata=metadata,
        )
    raise TypeError(f"not a provider error: {type(exc).__name__}")

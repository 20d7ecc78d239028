"""Provider failures -> gRPC codes, reasons, retry delays; messages scrubbed of credentials.

The exceptions are the SDKs' own, built the way the SDKs build them from an HTTP response.
"""

from __future__ import annotations

import email.utils

import aiohttp
import anthropic
import httpx
import openai
import pytest

from mesh.contract.errors import Code
from nodes.bridges.errors import map_provider_error, retry_after_s, scrub

KEY = "sk-proj-unit-test-4b9d2e7f1a"
_REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def _openai_error(
    status: int, headers: dict[str, str] | None = None, message: str = "bad"
) -> Exception:
    body = {"error": {"message": message, "type": "x"}}
    response = httpx.Response(status, headers=headers, json=body, request=_REQUEST)
    client = openai.AsyncOpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")
    return client._make_status_error(message, body=body, response=response)


def _anthropic_error(status: int, body: dict[str, object] | None = None) -> Exception:
    body = body or {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    response = httpx.Response(status, json=body, request=_REQUEST)
    client = anthropic.AsyncAnthropic(api_key="x", base_url="http://127.0.0.1:9")
    return client._make_status_error("boom", body=body, response=response)


@pytest.mark.parametrize(
    ("status", "code", "reason", "retryable"),
    [
        (400, Code.INVALID_ARGUMENT, "UPSTREAM_INVALID_REQUEST", False),
        (401, Code.UNAUTHENTICATED, "UPSTREAM_AUTH", False),
        (403, Code.PERMISSION_DENIED, "UPSTREAM_AUTH", False),
        (404, Code.NOT_FOUND, "UPSTREAM_NOT_FOUND", False),
        (408, Code.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT", False),
        (422, Code.INVALID_ARGUMENT, "UPSTREAM_INVALID_REQUEST", False),
        (429, Code.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED", True),
        (500, Code.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", True),
        (503, Code.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", True),
        (504, Code.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT", True),
        (529, Code.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", True),
        (402, Code.FAILED_PRECONDITION, "UPSTREAM_REJECTED", False),
    ],
)
def test_status_table(status: int, code: Code, reason: str, retryable: bool) -> None:
    for exc in (_openai_error(status), _anthropic_error(status)):
        error = map_provider_error(exc, provider="p", model="m")
        assert (error.code, error.reason, error.retryable) == (code, reason, retryable)
        assert error.metadata == {"provider": "p", "model": "m", "http_status": str(status)}


def test_auth_errors_never_echo_the_provider_message() -> None:
    exc = _openai_error(401, message=f"Incorrect API key provided: {KEY[:8]}****{KEY[-4:]}")
    error = map_provider_error(exc, provider="openai", model="gpt-4o", secret=KEY)
    assert error.message == "openai rejected the bridge's API key (HTTP 401)"


def test_other_messages_are_scrubbed_and_kept_short() -> None:
    exc = _openai_error(400, message=f"bad request with key {KEY} and Bearer abc.def " + "x" * 900)
    error = map_provider_error(exc, provider="openai", model="m", secret=KEY)
    assert KEY not in error.message and "abc.def" not in error.message
    assert error.message.startswith("openai returned HTTP 400: bad request with key [redacted]")
    assert len(error.message) < 300


def test_rate_limit_carries_retry_after() -> None:
    error = map_provider_error(
        _openai_error(429, headers={"Retry-After": "7"}), provider="p", model="m"
    )
    assert error.retry_after_s == 7.0
    error = map_provider_error(_openai_error(429), provider="p", model="m")
    assert error.retry_after_s == 1.0  # no header: still a hint to come back


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "2.5"}) == 2.5
    date = email.utils.format_datetime(
        email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT")
    )
    now = email.utils.parsedate_to_datetime(date).timestamp() - 12
    assert retry_after_s({"retry-after": date}, now=now) == pytest.approx(12)
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_stream_error_events_map_by_their_error_type() -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    error = map_provider_error(_anthropic_error(200, overloaded), provider="a", model="m")
    assert (error.code, error.retryable, error.metadata["http_status"]) == (
        Code.UNAVAILABLE,
        True,
        "529",
    )


def test_timeouts_and_connection_errors() -> None:
    timeout = map_provider_error(openai.APITimeoutError(request=_REQUEST), provider="p", model="m")
    assert (timeout.code, timeout.retryable) == (Code.DEADLINE_EXCEEDED, False)
    refused = map_provider_error(
        anthropic.APIConnectionError(request=_REQUEST), provider="p", model="m"
    )
    assert (refused.code, refused.reason, refused.retryable) == (
        Code.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
        True,
    )
    dropped = map_provider_error(
        httpx.RemoteProtocolError("peer closed connection"), provider="p", model="m"
    )
    assert (dropped.code, dropped.retryable) == (Code.UNAVAILABLE, True)
    stalled = map_provider_error(httpx.ReadTimeout("slow"), provider="p", model="m")
    assert stalled.code == Code.DEADLINE_EXCEEDED
    with pytest.raises(TypeError):
        map_provider_error(ValueError("x"), provider="p", model="m")


def _through_the_aiohttp_transport(cause: BaseException) -> BaseException:
    """The chain the SDKs raise over httpx-aiohttp: APITimeoutError from httpx.ConnectTimeout
    from the aiohttp error (the transport maps every ClientConnectionError to ConnectTimeout)."""
    try:
        try:
            try:
                raise cause
            except Exception as exc:
                raise httpx.ConnectTimeout(str(exc)) from exc
        except httpx.ConnectTimeout as exc:
            raise openai.APITimeoutError(request=_REQUEST) from exc
    except openai.APITimeoutError as sdk_error:
        return sdk_error


def test_a_dead_upstream_behind_the_aiohttp_transport_is_unavailable_not_slow() -> None:
    for dead in (
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
    ):
        mapped = map_provider_error(_through_the_aiohttp_transport(dead), provider="p", model="m")
        assert (mapped.code, mapped.reason, mapped.retryable) == (
            Code.UNAVAILABLE,
            "UPSTREAM_UNAVAILABLE",
            True,
        ), dead
    slow = aiohttp.ConnectionTimeoutError("connect timed out")  # aiohttp's own timeout
    mapped = map_provider_error(_through_the_aiohttp_transport(slow), provider="p", model="m")
    assert (mapped.code, mapped.reason) == (Code.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT")


def test_scrub() -> None:
    assert scrub("key sk-ant-api03-abcdef here") == "key [redacted] here"
    assert scrub("x-api-key: secret123 rest", None) == "[redacted] rest"
    assert scrub("my own secret", "own secret") == "my [redacted]"

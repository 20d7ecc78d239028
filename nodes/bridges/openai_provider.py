"""OpenAI's Chat Completions API (and any server speaking it) through the official SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import openai

from mesh.contract.errors import Code, FieldViolation, InvalidRequest, MeshError
from nodes.bridges.prices import ProviderUsage
from nodes.bridges.provider import ProviderClient, ProviderReply, ProviderRequest
from nodes.engines.base import FinishReason

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.STOP,
    "function_call": FinishReason.STOP,
    # The provider cut the answer off: the caller did not get what the model would have said.
    "content_filter": FinishReason.ABORTED,
}


def finish_reason(value: str | None) -> FinishReason:
    return _FINISH.get(value or "stop", FinishReason.STOP)


def reply_of(content: bytes, *, provider: str, model: str) -> ProviderReply:
    """A chat.completion body read as the bridge needs it; anything else is a precise error
    (the SDK's lenient model used to let a proxy's error page through as an AttributeError)."""
    try:
        body = json.loads(content)
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
        usage = body.get("usage")
        if not isinstance(text, str) or not isinstance(finish, str | None):
            raise TypeError("content or finish_reason of the wrong type")
        reported = usage_from_json(usage) if usage is not None else None
    except (ValueError, LookupError, TypeError, AttributeError):
        raise _bad_response(provider, model) from None
    return ProviderReply(
        finish_reason=finish_reason(finish),
        usage=reported or ProviderUsage(0, 0),
        text=text,
        usage_reported=reported is not None,
    )


def chunk_of(
    chunk: Any, *, provider: str, model: str
) -> tuple[list[str], str | None, ProviderUsage | None]:
    """(text pieces, finish reason, usage) of one chat.completion.chunk as JSON; anything else
    is UPSTREAM_BAD_RESPONSE (after output the router ends the stream with it)."""
    try:
        pieces: list[str] = []
        finish: str | None = None
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content is not None and not isinstance(content, str):
                raise TypeError("delta content is not text")
            if content:
                pieces.append(content)
            reason = choice.get("finish_reason")
            if reason is not None and not isinstance(reason, str):
                raise TypeError("finish_reason is not text")
            finish = reason or finish
        usage = chunk.get("usage")
        return pieces, finish, usage_from_json(usage) if usage is not None else None
    except (LookupError, TypeError, AttributeError):
        raise _bad_response(provider, model) from None


def _bad_response(provider: str, model: str) -> MeshError:
    return MeshError(
        f"{provider} answered with something that is not a chat completion",
        code=Code.UNAVAILABLE,
        reason="UPSTREAM_BAD_RESPONSE",
        retryable=True,  # another node may answer properly
        metadata={"provider": provider, "model": model},
    )


def usage_from_json(usage: Any) -> ProviderUsage:
    """`usage` of a chat.completion as JSON (TypeError or AttributeError when it is not one);
    prompt_tokens already includes the cached ones (prompt_tokens_details.cached_tokens)."""
    details = usage.get("prompt_tokens_details") or {}
    counts = (
        usage.get("prompt_tokens") or 0,
        usage.get("completion_tokens") or 0,
        details.get("cached_tokens") or 0,
    )
    if not all(isinstance(n, int) and n >= 0 for n in counts):
        raise TypeError("token counts must be non-negative integers")
    return ProviderUsage(
        input_tokens=counts[0], output_tokens=counts[1], cached_input_tokens=counts[2]
    )


async def _no_key() -> str:
    """The key of a server that needs none (the SDK refuses a plain empty key)."""
    return ""


class OpenAIClient(ProviderClient):
    """`openai` is api.openai.com; `openai-compatible` is any server speaking the same API."""

    def __init__(self, *, provider: str, base_url: str, api_key: str | None) -> None:
        self.name = provider
        # Retries are the bridge's (deadline-aware, only before output): none in the SDK.
        # A server without auth gets no Authorization header at all (explicitly omitted:
        # the SDK refuses a missing key otherwise).
        self._sdk = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or _no_key,
            max_retries=0,
            # The SDK's `[aiohttp]` transport: against the fake upstream here (1,500 sequential
            # post() calls, three rounds) 0.74-0.77 ms p50 and 0.60 ms CPU per call, against
            # 1.08-1.22 ms and 0.87-0.94 ms on its default httpx transport.
            http_client=openai.DefaultAioHttpClient(),
        )
        self._headers: dict[str, Any] = {} if api_key else {"Authorization": openai.Omit()}

    def _body(self, request: ProviderRequest) -> dict[str, Any]:
        """The request body as sent (`extra_body` merged, as the SDK's create() does)."""
        args = self._arguments(request)
        extra = args.pop("extra_body", {})
        return {**args, **extra}

    def _arguments(self, request: ProviderRequest) -> dict[str, Any]:
        s = request.sampling
        args: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        # api.openai.com wants max_completion_tokens (reasoning models reject max_tokens);
        # compatible servers may know only the older name.
        if self.name == "openai":
            args["max_completion_tokens"] = s.max_tokens
        else:
            args["max_tokens"] = s.max_tokens
        if s.stop:
            args["stop"] = list(s.stop)
        if s.seed is not None:
            args["seed"] = s.seed
        if s.top_k > 0:
            if self.name == "openai":
                raise InvalidRequest(
                    "top_k is not supported by the OpenAI API",
                    violations=[FieldViolation("sampling.top_k", "not supported by openai")],
                    metadata={"provider": self.name, "model": request.model},
                )
            args["extra_body"] = {"top_k": s.top_k}
        return args

    async def complete(self, request: ProviderRequest, timeout_s: float) -> ProviderReply:
        # The SDK's documented low-level call (`client.post(path, cast_to=httpx.Response)`):
        # its base URL, auth, timeouts and error types, without create()'s argument transform
        # and response model. Measured against a fake upstream on this machine: 1.35 ms of CPU
        # per call through create(), 0.86 ms through post() (0.63 ms for bare httpx).
        response = await self._sdk.post(
            "/chat/completions",
            body=self._body(request),
            cast_to=httpx.Response,
            options={"timeout": timeout_s, "headers": self._headers},
        )
        return reply_of(response.content, provider=self.name, model=request.model)

    async def stream(
        self, request: ProviderRequest, timeout_s: float
    ) -> AsyncGenerator[str | ProviderReply, None]:
        # The same low-level call, streamed: the SDK's SSE reading, `[DONE]` and in-stream error
        # events, with each chunk left as JSON instead of a ChatCompletionChunk model (an
        # 8-chunk stream from the fake upstream: 2.87 -> 1.69 ms of CPU here).
        events = await self._sdk.post(
            "/chat/completions",
            body={
                **self._body(request),
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            cast_to=object,
            options={"timeout": timeout_s, "headers": self._headers},
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )
        finish: str | None = None
        usage: ProviderUsage | None = None
        async with events:  # leaving the block closes the HTTP response
            try:
                async for chunk in events:
                    pieces, chunk_finish, chunk_usage = chunk_of(
                        chunk, provider=self.name, model=request.model
                    )
                    usage = chunk_usage or usage
                    finish = chunk_finish or finish
                    for piece in pieces:
                        yield piece
            except ValueError:  # an event whose data is not JSON
                raise _bad_response(self.name, request.model) from None
        yield ProviderReply(
            finish_reason=finish_reason(finish),
            usage=usage or ProviderUsage(0, 0),
            usage_reported=usage is not None,
        )

    async def probe(self, timeout_s: float) -> None:
        await self._sdk.models.list(timeout=timeout_s, extra_headers=self._headers)

    async def close(self) -> None:
        await self._sdk.close()

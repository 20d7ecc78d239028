"""Anthropic's Messages API through the official SDK.

Differences from chat completions handled here: system prompts go in the separate `system`
field; consecutive turns of one role are merged (the API wants alternating turns); usage
counts cache reads and writes apart from `input_tokens`; stop reasons have their own names.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anthropic

from mesh.contract.errors import FieldViolation, InvalidRequest
from nodes.bridges.prices import ProviderUsage
from nodes.bridges.provider import ProviderClient, ProviderReply, ProviderRequest
from nodes.engines.base import FinishReason, Message

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "tool_use": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    # The model declined to continue: the answer was cut off, not finished.
    "refusal": FinishReason.ABORTED,
}


def finish_reason(value: str | None) -> FinishReason:
    return _FINISH.get(value or "end_turn", FinishReason.STOP)


def split_system(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """System turns joined into `system`; the rest with same-role neighbours merged."""
    system = [m.content for m in messages if m.role == "system"]
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    return ("\n\n".join(system) if system else None), turns


class UsageCounter:
    """Anthropic usage, from a whole message or accumulated over stream events.

    `input_tokens` there excludes cache reads and writes; ours counts every prompt token.
    """

    def __init__(self) -> None:
        self.fields: dict[str, int] = {}

    def update(self, usage: Any) -> None:
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = getattr(usage, name, None)
            if value is not None:
                self.fields[name] = int(value)  # later events carry cumulative counts

    @property
    def reported(self) -> bool:
        return "input_tokens" in self.fields or "output_tokens" in self.fields

    def usage(self) -> ProviderUsage:
        read = self.fields.get("cache_read_input_tokens", 0)
        written = self.fields.get("cache_creation_input_tokens", 0)
        return ProviderUsage(
            input_tokens=self.fields.get("input_tokens", 0) + read + written,
            output_tokens=self.fields.get("output_tokens", 0),
            cached_input_tokens=read,
            cache_write_input_tokens=written,
        )


class AnthropicClient(ProviderClient):
    """Anthropic's API, or a server that speaks /v1/messages."""

    name = "anthropic"

    def __init__(self, *, base_url: str, api_key: str | None) -> None:
        self._sdk = anthropic.AsyncAnthropic(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(),  # as the OpenAI client (faster)
        )

    def _arguments(self, request: ProviderRequest) -> dict[str, Any]:
        s = request.sampling
        if s.seed is not None:
            raise InvalidRequest(
                "seed is not supported by the Anthropic API",
                violations=[FieldViolation("sampling.seed", "not supported by anthropic")],
                metadata={"provider": self.name, "model": request.model},
            )
        system, turns = split_system(request.messages)
        args: dict[str, Any] = {
            "model": request.model,
            "messages": turns,
            "max_tokens": s.max_tokens,
        }
        if system is not None:
            args["system"] = system
        if s.stop:
            args["stop_sequences"] = list(s.stop)
        # This SDK no longer has typed sampling arguments; the API still reads them from the
        # body. Only non-default values are sent, so models without them are unaffected.
        sampling: dict[str, Any] = {}
        if s.temperature != 1.0:
            sampling["temperature"] = s.temperature
        if s.top_p != 1.0:
            sampling["top_p"] = s.top_p
        if s.top_k > 0:
            sampling["top_k"] = s.top_k
        if sampling:
            args["extra_body"] = sampling
        return args

    async def complete(self, request: ProviderRequest, timeout_s: float) -> ProviderReply:
        message = await self._sdk.messages.create(
            **self._arguments(request), stream=False, timeout=timeout_s
        )
        counter = UsageCounter()
        counter.update(message.usage)
        text = "".join(
            block.text for block in message.content if getattr(block, "type", "") == "text"
        )
        return ProviderReply(
            finish_reason=finish_reason(message.stop_reason),
            usage=counter.usage(),
            text=text,
            usage_reported=counter.reported,
        )

    async def stream(
        self, request: ProviderRequest, timeout_s: float
    ) -> AsyncGenerator[str | ProviderReply, None]:
        events = await self._sdk.messages.create(
            **self._arguments(request), stream=True, timeout=timeout_s
        )
        counter = UsageCounter()
        stop: str | None = None
        async with events:  # leaving the block closes the HTTP response
            async for event in events:
                if event.type == "message_start":
                    counter.update(event.message.usage)
                elif event.type == "content_block_delta":
                    text = getattr(event.delta, "text", None)
                    if text:
                        yield text
                elif event.type == "message_delta":
                    counter.update(event.usage)
                    stop = event.delta.stop_reason or stop
        yield ProviderReply(
            finish_reason=finish_reason(stop),
            usage=counter.usage(),
            usage_reported=counter.reported,
        )

    async def probe(self, timeout_s: float) -> None:
        await self._sdk.models.list(timeout=timeout_s)

    async def close(self) -> None:
        await self._sdk.close()

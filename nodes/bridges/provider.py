"""What a bridge needs from one provider SDK: a unary call, a stream, a cheap probe.

Requests and replies here are provider-neutral; `openai_backend` and `anthropic_backend`
translate them to and from their SDK's shapes.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from nodes.bridges.prices import ProviderUsage
from nodes.engines.base import FinishReason, Message, Sampling


@dataclass(frozen=True)
class ProviderRequest:
    """One chat request, as every provider module receives it."""

    model: str
    messages: Sequence[Message]
    sampling: Sampling


@dataclass(frozen=True)
class ProviderReply:
    """How a provider call ended: text (unary only), finish reason and real usage."""

    finish_reason: FinishReason
    usage: ProviderUsage
    text: str = ""
    usage_reported: bool = True


class ProviderClient(abc.ABC):
    """One provider's SDK client. Methods raise the SDK's own exceptions; the bridge maps them."""

    name: str

    @abc.abstractmethod
    async def complete(self, request: ProviderRequest, timeout_s: float) -> ProviderReply:
        """A unary call: the whole answer at once."""

    @abc.abstractmethod
    def stream(
        self, request: ProviderRequest, timeout_s: float
    ) -> AsyncGenerator[str | ProviderReply, None]:
        """Text pieces, then exactly one ProviderReply. Closing it closes the HTTP stream."""

    @abc.abstractmethod
    async def probe(self, timeout_s: float) -> None:
        """A call that costs no tokens (the model list), to tell whether the API answers."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the HTTP connection pool."""

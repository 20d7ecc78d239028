"""The engine boundary: what a node needs from any model runtime.

Serving code depends on this interface only (as vLLM's serving layer depends on its engine
client), so vLLM, transformers, and the fake test engine are interchangeable.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Message:
    """One chat turn; role is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters after defaults are applied."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class GenerationInput:
    """Input for `InferenceBackend.generate`."""

    request_id: str
    messages: Sequence[Message]
    sampling: Sampling


@dataclass(frozen=True)
class TextChunk:
    """Newly generated text, in order."""

    text: str


@dataclass(frozen=True)
class EngineTimings:
    """When the engine queued, scheduled and produced a request (epoch ns, as spans use).

    Filled in only by engines that measure these (vLLM); None means the engine did not say.
    """

    queued_ns: int | None = None
    scheduled_ns: int | None = None
    first_token_ns: int | None = None
    last_token_ns: int | None = None


@dataclass(frozen=True)
class GenerationEnd:
    """The last item of every generation: why it ended and real token counts."""

    finish_reason: FinishReason
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    timings: EngineTimings | None = None


@dataclass(frozen=True)
class EngineLoad:
    """Instantaneous load, reported to routers."""

    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0


@dataclass
class EngineInfo:
    """Facts about the loaded model."""

    model_id: str
    context_window: int
    extra: dict[str, str] = field(default_factory=dict)


class InferenceBackend(abc.ABC):
    """An engine that streams generations and can abort them.

    `generate` is an async iterator of TextChunk items ending with exactly one GenerationEnd.
    Closing the iterator early (client cancel, deadline) must abort the engine-side request, so
    no compute is spent on an answer nobody will read.
    """

    @property
    @abc.abstractmethod
    def info(self) -> EngineInfo:
        """Model id and context window (valid after `start`)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model; slow, called once before serving."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the engine and any worker processes."""

    @abc.abstractmethod
    def generate(self, request: GenerationInput) -> AsyncGenerator[TextChunk | GenerationEnd, None]:
        """Stream the answer to `request`."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a running generation (idempotent; unknown ids are ignored)."""

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise EngineUnavailable when the engine cannot serve."""

    @abc.abstractmethod
    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the chat-templated prompt takes (for context-window checks)."""

    @abc.abstractmethod
    def load(self) -> EngineLoad:
        """Current running and waiting requests."""

"""FakeEngine: a deterministic engine for testing and benchmarking the mesh's own logic.

It is not a model. Routing, fallback, breakers, load and the router's overhead are measured
against it so that a real model's latency does not drown the figure; every capability also has
a test against the real engines. Behaviour is scripted per instance (fault injection).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from mesh.contract.errors import EngineUnavailable
from nodes.engines.base import (
    EngineInfo,
    EngineLoad,
    FinishReason,
    GenerationEnd,
    GenerationInput,
    InferenceBackend,
    Message,
    TextChunk,
)


@dataclass
class FakeScript:
    """How the fake engine behaves; tests change it to inject faults."""

    words_per_answer: int = 8
    delay_before_first_s: float = 0.0
    delay_between_s: float = 0.0
    fail_before_first: bool = False  # raise EngineUnavailable before any output
    die_after_chunks: int | None = None  # raise EngineUnavailable mid-stream


class FakeEngine(InferenceBackend):
    """Echoes a deterministic answer derived from the prompt, token by token."""

    def __init__(self, model_id: str = "fake-model", context_window: int = 8192) -> None:
        self._info = EngineInfo(model_id=model_id, context_window=context_window)
        self.script = FakeScript()
        self.healthy = True
        self._running: set[str] = set()
        self._aborted: set[str] = set()
        self.completed = 0
        self.aborted_total = 0

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.healthy = False

    async def check_health(self) -> None:
        if not self.healthy:
            raise EngineUnavailable("fake engine marked unhealthy")

    def load(self) -> EngineLoad:
        return EngineLoad(running=len(self._running))

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages) + 1

    async def abort(self, request_id: str) -> None:
        if request_id in self._running:
            self._aborted.add(request_id)

    async def generate(
        self, request: GenerationInput
    ) -> AsyncGenerator[TextChunk | GenerationEnd, None]:
        await self.check_health()
        script = self.script
        self._running.add(request.request_id)
        finish = FinishReason.STOP
        produced = 0
        ended = False
        try:
            if script.delay_before_first_s:
                await asyncio.sleep(script.delay_before_first_s)
            if script.fail_before_first:
                raise EngineUnavailable("fake engine scripted to fail")
            last = request.messages[-1].content.split() or ["empty"]
            budget = min(script.words_per_answer, request.sampling.max_tokens)
            for i in range(budget):
                if request.request_id in self._aborted:
                    finish = FinishReason.ABORTED
                    break
                if script.die_after_chunks is not None and i >= script.die_after_chunks:
                    raise EngineUnavailable("fake engine scripted to die mid-stream")
                if i and script.delay_between_s:
                    await asyncio.sleep(script.delay_between_s)
                produced += 1
                yield TextChunk(("" if i == 0 else " ") + last[i % len(last)])
            else:
                if budget < script.words_per_answer:
                    finish = FinishReason.LENGTH
            ended = True
            self.completed += 1
            yield GenerationEnd(
                finish,
                input_tokens=self.count_prompt_tokens(request.messages),
                output_tokens=produced,
            )
        finally:
            # Closed before the end (cancel, deadline, scripted death) counts as aborted.
            if not ended or finish is FinishReason.ABORTED:
                self.aborted_total += 1
            self._running.discard(request.request_id)
            self._aborted.discard(request.request_id)

"""The light engine: Hugging Face transformers `generate` with a token streamer.

For tests and machines without vLLM. It runs one generation at a time (a CPU has no spare
cores to batch on without vLLM's scheduler); the rest wait in order and count as `waiting`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from mesh.config import NodeConfig
from mesh.contract.errors import EngineUnavailable
from nodes.assets import known_model, model_path
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
from nodes.engines.stop_strings import StopStringFilter


class _QueueStreamer:
    """transformers streamer that hands each new token id to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[int | None]) -> None:
        self._loop, self._queue = loop, queue
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, int(token))

    def end(self) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)


class TransformersBackend(InferenceBackend):
    """A local model on transformers, streaming real tokens."""

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        self._model: Any = None
        self._tokenizer: Any = None
        self._info = EngineInfo(
            model_id=config.model,
            context_window=config.context_window or known_model(config.model).context_window,
        )
        # One worker thread: torch releases the GIL, the event loop stays free.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hf-generate")
        self._turn = asyncio.Lock()
        self._waiting = 0
        self._running = 0
        self._cancel_flags: dict[str, threading.Event] = {}
        self._closed = False

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = model_path(self._config.model)
        self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        self._model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        self._model.eval()

    async def close(self) -> None:
        self._closed = True
        for flag in self._cancel_flags.values():
            flag.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def check_health(self) -> None:
        if self._closed or self._model is None:
            raise EngineUnavailable("the transformers engine is not loaded")

    def load(self) -> EngineLoad:
        return EngineLoad(running=self._running, waiting=self._waiting)

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        encoded = self._tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self._prompt_ids(messages))

    async def abort(self, request_id: str) -> None:
        flag = self._cancel_flags.get(request_id)
        if flag is not None:
            flag.set()

    async def generate(
        self, request: GenerationInput
    ) -> AsyncGenerator[TextChunk | GenerationEnd, None]:
        await self.check_health()
        cancel = threading.Event()
        self._cancel_flags[request.request_id] = cancel
        try:
            self._waiting += 1
            try:
                await self._turn.acquire()
            finally:
                self._waiting -= 1
            self._running += 1
            try:
                async for item in self._generate_now(request, cancel):
                    yield item
            finally:
                self._running -= 1
                self._turn.release()
        finally:
            self._cancel_flags.pop(request.request_id, None)
            cancel.set()

    async def _generate_now(
        self, request: GenerationInput, cancel: threading.Event
    ) -> AsyncGenerator[TextChunk | GenerationEnd, None]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancel.is_set()

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        prompt_ids = self._prompt_ids(request.messages)
        sampling = request.sampling
        greedy = sampling.temperature == 0.0
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([prompt_ids]),
            "attention_mask": torch.ones(1, len(prompt_ids), dtype=torch.long),
            "max_new_tokens": sampling.max_tokens,
            "do_sample": not greedy,
            "streamer": _QueueStreamer(loop, queue),
            "stopping_criteria": StoppingCriteriaList([_Cancelled()]),
            "pad_token_id": self._tokenizer.eos_token_id,
        }
        if not greedy:
            kwargs.update(
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k
            )

        def run() -> None:
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                self._model.generate(**kwargs)

        future = loop.run_in_executor(self._executor, run)
        tokens: list[int] = []
        emitted = ""
        stops = StopStringFilter(sampling.stop)
        finish = FinishReason.LENGTH
        try:
            while True:
                token = await queue.get()
                if token is None:
                    break
                tokens.append(token)
                if token == self._tokenizer.eos_token_id:
                    finish = FinishReason.STOP
                    break
                text = self._tokenizer.decode(tokens, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait
                    continue
                fresh, hit = stops.feed(text[len(emitted) :])
                emitted = text
                if fresh:
                    yield TextChunk(fresh)
                if hit:
                    finish = FinishReason.STOP
                    break
            tail = stops.flush()
            if tail:
                yield TextChunk(tail)
            if cancel.is_set():
                finish = FinishReason.ABORTED
            await future
            yield GenerationEnd(finish, input_tokens=len(prompt_ids), output_tokens=len(tokens))
        finally:
            cancel.set()
            if not future.done():
                # Wait for the worker to notice the flag so the next request finds it free.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(future)

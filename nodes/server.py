"""An inference node: mesh.v1.InferenceService over one InferenceBackend.

Each request is a short sequence of steps over a context (validate -> prepare -> admit ->
stream -> build); every exception becomes a status in exactly one place (the error boundary).
With telemetry, each RPC also feeds the process's metrics (tokens, duration, time to first
token, requests by status), the node's load gauges, and engine phase spans where the engine
reports them; none of that can fail a request.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import grpc.aio
from opentelemetry import trace

from mesh.config import NodeConfig
from mesh.contract.errors import InvalidRequest, ModelNotFound, echo
from mesh.contract.status import stream_error_boundary, unary_error_boundary
from mesh.contract.validation import GenerationLike, validate_generation
from mesh.telemetry import semconv as sc
from mesh.telemetry.generation_metrics import GenerationRecorder, observe_generation
from mesh.telemetry.metrics import NodeLoadSample
from mesh.telemetry.setup import Telemetry
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.engines.base import (
    EngineTimings,
    FinishReason,
    GenerationEnd,
    GenerationInput,
    InferenceBackend,
    Message,
    Sampling,
    TextChunk,
)
from nodes.load import Admission, Ewma

SELF_HOSTED = "self-hosted"
_ROLE = {
    types_pb2.ROLE_SYSTEM: "system",
    types_pb2.ROLE_USER: "user",
    types_pb2.ROLE_ASSISTANT: "assistant",
}
_FINISH = {
    FinishReason.STOP: types_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: types_pb2.FINISH_REASON_LENGTH,
    FinishReason.ABORTED: types_pb2.FINISH_REASON_ABORTED,
}


@dataclass
class _Run:
    """Everything one request accumulates on its way through the node."""

    request_id: str
    engine_input: GenerationInput
    recorder: GenerationRecorder
    started: float = field(default_factory=time.perf_counter)
    end: GenerationEnd | None = None


class NodeServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Serves one local model."""

    def __init__(
        self, config: NodeConfig, backend: InferenceBackend, *, telemetry: Telemetry | None = None
    ) -> None:
        self.config = config
        self.backend = backend
        self.admission = Admission(config.max_inflight)
        self.ttft_ms = Ewma()
        self.telemetry = telemetry
        self._card_provider: str | None = None
        if telemetry is not None:
            telemetry.metrics.watch_node_load(config.id, self.load_sample)

    # --- the model card -------------------------------------------------------------------
    def model_card(self) -> types_pb2.ModelCard:
        info = self.backend.info
        return types_pb2.ModelCard(
            model_id=info.model_id,
            provider=SELF_HOSTED,
            kind=types_pb2.MODEL_KIND_SELF_HOSTED,
            tier=self.config.tier.proto,
            context_window=self.context_window,
            input_price_per_mtok=self.config.input_price_per_mtok,
            output_price_per_mtok=self.config.output_price_per_mtok,
            cached_input_price_per_mtok=self.config.input_price_per_mtok,
            capabilities=self.config.capabilities,
            aliases=self.config.aliases,
        )

    @property
    def card_provider(self) -> str:
        """The provider this node's model card names; metrics and routes carry the same one.

        Read from the card (which a bridge's servicer overrides), so a bridge node's requests
        are never counted as self-hosted ones.
        """
        if self._card_provider is None:
            self._card_provider = self.model_card().provider or SELF_HOSTED
        return self._card_provider

    @property
    def context_window(self) -> int:
        # The engine's own limit (vLLM's max_model_len) caps whatever the config claims.
        engine = self.backend.info.context_window
        return min(self.config.context_window, engine) if self.config.context_window else engine

    def node_load(self) -> types_pb2.NodeLoad:
        load = self.backend.load()
        return types_pb2.NodeLoad(
            running=load.running,
            waiting=load.waiting,
            kv_cache_usage=load.kv_cache_usage,
            ewma_ttft_ms=self.ttft_ms.value or 0.0,
            max_inflight=self.admission.max_inflight,
        )

    def load_sample(self) -> NodeLoadSample:
        """The engine's load for the node gauges, read when metrics are collected."""
        load = self.backend.load()
        return NodeLoadSample(load.running, load.waiting, load.kv_cache_usage)

    # --- steps ----------------------------------------------------------------------------
    def _observe(self) -> AbstractContextManager[GenerationRecorder]:
        return observe_generation(
            self.telemetry.metrics if self.telemetry is not None else None,
            provider=self.card_provider,
            model=self.backend.info.model_id,
            node=self.config.id,
        )

    def _prepare(
        self,
        request: GenerationLike,
        routing: types_pb2.RoutingHints,
        recorder: GenerationRecorder,
    ) -> _Run:
        validate_generation(request)
        pinned = routing.model
        if (
            pinned
            and pinned != "auto"
            and pinned not in (self.backend.info.model_id, *self.config.aliases)
        ):
            raise ModelNotFound(
                f"this node serves {self.backend.info.model_id!r}, not {echo(pinned)!r}",
                metadata={"model": echo(pinned), "node_id": self.config.id},
            )
        messages = [Message(_ROLE[m.role], m.content) for m in request.messages]
        prompt_tokens = self.backend.count_prompt_tokens(messages)
        window = self.context_window
        if prompt_tokens >= window:
            raise InvalidRequest(
                f"prompt is {prompt_tokens} tokens; the context window of "
                f"{self.backend.info.model_id} is {window} tokens",
                reason="CONTEXT_WINDOW_EXCEEDED",
                metadata={"prompt_tokens": str(prompt_tokens), "context_window": str(window)},
            )
        s = request.sampling
        wanted = s.max_tokens if s.HasField("max_tokens") else self.config.default_max_tokens
        sampling = Sampling(
            max_tokens=min(wanted, window - prompt_tokens),
            temperature=s.temperature if s.HasField("temperature") else 1.0,
            top_p=s.top_p if s.HasField("top_p") else 1.0,
            top_k=s.top_k if s.HasField("top_k") else 0,
            stop=tuple(s.stop),
            seed=s.seed if s.HasField("seed") else None,
        )
        request_id = request.request_id or uuid.uuid4().hex
        sc.tag_request(request_id)
        recorder.request_id = request_id
        # The engine id is unique even if a caller reuses its request id concurrently.
        engine_id = f"{request_id}-{uuid.uuid4().hex[:8]}"
        return _Run(request_id, GenerationInput(engine_id, messages, sampling), recorder)

    async def _stream(self, run: _Run) -> AsyncGenerator[str, None]:
        """Engine output as text; records the end; aborts the engine if closed early."""
        self.admission.enter()
        first = True
        try:
            async with contextlib.aclosing(self.backend.generate(run.engine_input)) as items:
                async for item in items:
                    if isinstance(item, TextChunk):
                        if first:
                            self.ttft_ms.add((time.perf_counter() - run.started) * 1000)
                            run.recorder.first_token()
                            first = False
                        yield item.text
                    else:
                        run.end = item
                        run.recorder.usage(
                            input_tokens=item.input_tokens, output_tokens=item.output_tokens
                        )
                        if item.timings is not None:
                            self._engine_spans(item.timings)
        finally:
            self.admission.leave()
            if run.end is None:  # cancelled, deadline passed or failed: free the engine
                await self.backend.abort(run.engine_input.request_id)

    def _engine_spans(self, timings: EngineTimings) -> None:
        """Queue / prefill / decode as children of the current (RPC server) span."""
        sc.record_engine_phases(
            queued_ns=timings.queued_ns,
            scheduled_ns=timings.scheduled_ns,
            first_token_ns=timings.first_token_ns,
            finished_ns=timings.last_token_ns,
            tracer=self.telemetry.tracer if self.telemetry is not None else None,
        )

    def _usage(self, end: GenerationEnd) -> types_pb2.Usage:
        cost = (
            end.input_tokens * self.config.input_price_per_mtok
            + end.output_tokens * self.config.output_price_per_mtok
        ) / 1e6
        return types_pb2.Usage(
            input_tokens=end.input_tokens,
            output_tokens=end.output_tokens,
            cached_input_tokens=end.cached_input_tokens,
            cost_usd=cost,
        )

    def _route(self) -> types_pb2.RouteInfo:
        return types_pb2.RouteInfo(
            node_id=self.config.id,
            model=self.backend.info.model_id,
            provider=self.card_provider,
            policy="direct",
            reason=self._direct_reason(),
            attempts=1,
            tier=self.config.tier.proto,
        )

    def _direct_reason(self) -> str:
        """RouteInfo.reason when a client calls this node without a router."""
        return f"served directly by node {self.config.id}"

    def _summary_fields(self, run: _Run) -> dict[str, Any]:
        end = run.end
        assert end is not None
        # gen_ai.* on the node's RPC server span: the engine's own token counts.
        sc.record_usage(
            trace.get_current_span(),
            input_tokens=end.input_tokens,
            output_tokens=end.output_tokens,
            cached_input_tokens=end.cached_input_tokens,
            response_model=self.backend.info.model_id,
            finish_reasons=[end.finish_reason.value],
            response_id=run.request_id,
        )
        return {
            "request_id": run.request_id,
            "finish_reason": _FINISH[end.finish_reason],
            "usage": self._usage(end),
            "route": self._route(),
            "model": self.backend.info.model_id,
        }

    # --- RPCs -----------------------------------------------------------------------------
    @unary_error_boundary
    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.GenerateResponse:
        with self._observe() as recorder:
            run = self._prepare(request, request.routing, recorder)
            parts = [text async for text in self._stream(run)]
            return inference_pb2.GenerateResponse(text="".join(parts), **self._summary_fields(run))

    @stream_error_boundary
    async def GenerateStream(
        self,
        request: inference_pb2.GenerateStreamRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        with self._observe() as recorder:
            run = self._prepare(request, request.routing, recorder)
            async with contextlib.aclosing(self._stream(run)) as texts:
                async for text in texts:
                    yield inference_pb2.GenerateStreamResponse(
                        delta=inference_pb2.TextDelta(text=text)
                    )
            yield inference_pb2.GenerateStreamResponse(
                summary=inference_pb2.GenerationSummary(**self._summary_fields(run))
            )

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.ListModelsResponse:
        return inference_pb2.ListModelsResponse(
            node_id=self.config.id, models=[self.model_card()], load=self.node_load()
        )

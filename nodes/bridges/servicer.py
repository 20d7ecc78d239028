"""The node servicer for a bridge: the shared request steps, an external model's card and cost.

Validation, admission (max concurrent requests), streaming and the error boundary are the
shared `NodeServicer`'s; this adds what is bridge-specific: the card says EXTERNAL and the
provider, cost comes from the price table and real usage, RouteInfo.attempts counts provider
attempts, and each RPC tells the backend its deadline and whether it streams.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
from opentelemetry import trace

from mesh.config import ModelPrice, NodeConfig
from mesh.telemetry import semconv as sc
from mesh.telemetry.setup import Telemetry
from mesh.v1 import inference_pb2, types_pb2
from nodes.bridges.backend import (
    BridgeBackend,
    BridgeEnd,
    CallOptions,
    call_scope,
    set_call_options,
)
from nodes.bridges.prices import ProviderUsage, request_cost_usd
from nodes.engines.base import GenerationEnd
from nodes.server import NodeServicer

BRIDGE_ATTEMPTS = "mesh.bridge.attempts"


def _call_options(context: grpc.aio.ServicerContext[Any, Any], *, stream: bool) -> CallOptions:
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return CallOptions(deadline=deadline, stream=stream)


class BridgeServicer(NodeServicer):
    """Serves one external model through a BridgeBackend."""

    def __init__(
        self,
        config: NodeConfig,
        backend: BridgeBackend,
        price: ModelPrice,
        *,
        telemetry: Telemetry | None = None,
    ) -> None:
        super().__init__(config, backend, telemetry=telemetry)
        self.bridge = backend
        self.price = price

    @property
    def provider(self) -> str:
        return self.bridge.config.provider

    def model_card(self) -> types_pb2.ModelCard:
        card = super().model_card()
        card.provider = self.provider
        card.kind = types_pb2.MODEL_KIND_EXTERNAL
        card.cached_input_price_per_mtok = self.price.cached_input_rate
        return card

    def _usage(self, end: GenerationEnd) -> types_pb2.Usage:
        written = end.cache_write_input_tokens if isinstance(end, BridgeEnd) else 0
        cost = request_cost_usd(
            self.price,
            ProviderUsage(
                input_tokens=end.input_tokens,
                output_tokens=end.output_tokens,
                cached_input_tokens=end.cached_input_tokens,
                cache_write_input_tokens=written,
            ),
        )
        return types_pb2.Usage(
            input_tokens=end.input_tokens,
            output_tokens=end.output_tokens,
            cached_input_tokens=end.cached_input_tokens,
            cost_usd=cost,
        )

    def _direct_reason(self) -> str:
        return f"served directly by bridge {self.config.id} ({self.provider})"

    def _summary_fields(self, run: Any) -> dict[str, Any]:
        fields = super()._summary_fields(run)
        span = trace.get_current_span()
        span.set_attribute(sc.GEN_AI_PROVIDER_NAME, self.provider)
        if isinstance(run.end, BridgeEnd):
            fields["route"].attempts = run.end.attempts
            span.set_attribute(BRIDGE_ATTEMPTS, run.end.attempts)
        return fields

    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.GenerateResponse:
        with call_scope(_call_options(context, stream=False)):
            reply: inference_pb2.GenerateResponse = await super().Generate(request, context)
            return reply

    async def GenerateStream(
        self,
        request: inference_pb2.GenerateStreamRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
        # Set, not scoped: grpc.aio may resume this generator in another context copy, where a
        # reset would fail. The backend reads the value before its first output, inside the
        # first step of this generator; the RPC's task (and its context) ends with the call.
        set_call_options(_call_options(context, stream=True))
        async for event in super().GenerateStream(request, context):
            yield event

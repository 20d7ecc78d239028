"""The mesh's metrics as one typed facade over OTel instruments.

Callers say what happened (`record_tokens`, `count_guard_verdict`, ...) and never touch
instrument names or attribute keys; every method is safe to call on the hot path and can never
raise. The GenAI histograms use the bucket boundaries the GenAI conventions recommend.
"""

from __future__ import annotations

from typing import Literal

from opentelemetry.metrics import Meter
from opentelemetry.util.types import AttributeValue

from mesh.telemetry import semconv as sc
from mesh.telemetry.safety import never_raises

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

BreakerState = Literal["closed", "half_open", "open"]
_BREAKER_VALUE: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}

# Metric attribute keys that have no span counterpart.
_NODE = "mesh.node"
_POLICY = "mesh.policy"
_MODEL = "mesh.model"
_GUARD = "mesh.guard"
_STAGE = "mesh.guard.stage"
_ACTION = "mesh.guard.action"
_HIT = "mesh.cache.hit"


def _attrs(**values: AttributeValue | None) -> dict[str, AttributeValue]:
    return {k: v for k, v in values.items() if v is not None}


class MeshMetrics:
    """All instruments of one process, created once from its Meter."""

    def __init__(self, meter: Meter) -> None:
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per operation, by token type",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of GenAI operations as the caller sees them",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_to_first_token = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time from request to the first generated token, on the serving node",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS,
        )
        self.requests = meter.create_counter(
            "mesh.requests", unit="{request}", description="Requests finished, by status"
        )
        self.guard_verdicts = meter.create_counter(
            "mesh.guard.verdicts",
            unit="{verdict}",
            description="Guard verdicts by guard and action",
        )
        self.cache_lookups = meter.create_counter(
            "mesh.cache.lookups", unit="{lookup}", description="Response cache lookups, hit or miss"
        )
        self.cache_savings = meter.create_counter(
            "mesh.cache.savings", unit="USD", description="Cost not spent thanks to cache hits"
        )
        self.cost = meter.create_counter(
            "mesh.cost", unit="USD", description="Cost of answered requests"
        )
        self.breaker_state = meter.create_gauge(
            "mesh.breaker.state",
            unit="1",
            description="Circuit breaker per node: 0 closed, 1 half-open, 2 open",
        )
        self.node_running = meter.create_gauge(
            "mesh.node.requests.running", unit="{request}", description="Requests being generated"
        )
        self.node_waiting = meter.create_gauge(
            "mesh.node.requests.waiting", unit="{request}", description="Requests queued"
        )
        self.node_kv_cache = meter.create_gauge(
            "mesh.node.kv_cache.usage", unit="1", description="Share of KV cache in use (0..1)"
        )

    @never_raises
    def record_tokens(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        provider: str,
        request_model: str,
        response_model: str | None = None,
        operation: str = sc.OPERATION_CHAT,
    ) -> None:
        """gen_ai.client.token.usage: one observation per token type."""
        base = _attrs(
            **{
                sc.GEN_AI_OPERATION_NAME: operation,
                sc.GEN_AI_PROVIDER_NAME: provider,
                sc.GEN_AI_REQUEST_MODEL: request_model,
                sc.GEN_AI_RESPONSE_MODEL: response_model,
            }
        )
        self.token_usage.record(input_tokens, {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT})
        self.token_usage.record(output_tokens, {**base, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT})

    @never_raises
    def record_operation_duration(
        self,
        seconds: float,
        *,
        provider: str,
        request_model: str,
        response_model: str | None = None,
        error_type: str | None = None,
        operation: str = sc.OPERATION_CHAT,
    ) -> None:
        """gen_ai.client.operation.duration; error_type is the status code name on failure."""
        self.operation_duration.record(
            seconds,
            _attrs(
                **{
                    sc.GEN_AI_OPERATION_NAME: operation,
                    sc.GEN_AI_PROVIDER_NAME: provider,
                    sc.GEN_AI_REQUEST_MODEL: request_model,
                    sc.GEN_AI_RESPONSE_MODEL: response_model,
                    sc.ERROR_TYPE: error_type,
                }
            ),
        )

    @never_raises
    def record_time_to_first_token(self, seconds: float, *, provider: str, model: str) -> None:
        """gen_ai.server.time_to_first_token, measured where the model runs."""
        self.time_to_first_token.record(
            seconds,
            {
                sc.GEN_AI_OPERATION_NAME: sc.OPERATION_CHAT,
                sc.GEN_AI_PROVIDER_NAME: provider,
                sc.GEN_AI_REQUEST_MODEL: model,
            },
        )

    @never_raises
    def count_request(
        self,
        *,
        status: str,
        model: str | None = None,
        node: str | None = None,
        policy: str | None = None,
    ) -> None:
        """One finished request; status is the gRPC code name ("OK", "PERMISSION_DENIED", ...)."""
        self.requests.add(
            1,
            _attrs(**{sc.MESH_STATUS: status.upper(), _MODEL: model, _NODE: node, _POLICY: policy}),
        )

    @never_raises
    def count_guard_verdict(self, *, guard: str, action: str, stage: str) -> None:
        """One guard verdict (pass, flag, redact, block, ...)."""
        self.guard_verdicts.add(1, {_GUARD: guard, _ACTION: action, _STAGE: stage})

    @never_raises
    def count_cache_lookup(
        self, *, hit: bool, kind: str = "exact", saved_usd: float | None = None
    ) -> None:
        """A cache lookup; on a hit, the cost the answer would have had goes to savings."""
        self.cache_lookups.add(1, {_HIT: hit, sc.MESH_CACHE_KIND: kind})
        if hit and saved_usd:
            self.cache_savings.add(saved_usd, {sc.MESH_CACHE_KIND: kind})

    @never_raises
    def add_cost(
        self, usd: float, *, model: str, node: str | None = None, provider: str | None = None
    ) -> None:
        """Money spent on one answered request."""
        if usd > 0:
            self.cost.add(
                usd, _attrs(**{_MODEL: model, _NODE: node, sc.GEN_AI_PROVIDER_NAME: provider})
            )

    @never_raises
    def set_breaker_state(self, node: str, state: BreakerState) -> None:
        """Current breaker state of one upstream node."""
        self.breaker_state.set(_BREAKER_VALUE[state], {_NODE: node})

    @never_raises
    def set_node_load(
        self, node: str, *, running: int, waiting: int, kv_cache_usage: float | None = None
    ) -> None:
        """Load of a node, as it reports it (its own gauges, or heartbeats seen by the router)."""
        self.node_running.set(running, {_NODE: node})
        self.node_waiting.set(waiting, {_NODE: node})
        if kv_cache_usage is not None:
            self.node_kv_cache.set(kv_cache_usage, {_NODE: node})

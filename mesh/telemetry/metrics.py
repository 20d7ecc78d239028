"""The mesh's metrics as one typed facade over OTel instruments.

Callers say what happened (`record_tokens`, `count_guard_verdict`, ...) and never touch
instrument names or attribute keys; every method is safe to call on the hot path and can never
raise. The GenAI histograms use the bucket boundaries the GenAI conventions recommend.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.util.types import AttributeValue

from mesh.telemetry import semconv as sc
from mesh.telemetry.safety import never_raises, safe_invoke

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
_MODE = "mesh.guard.mode"
_HIT = "mesh.cache.hit"
# Who observed a GenAI measurement: "node" (where the model ran) or "router" (its upstream
# attempt). In `mesh up` both live in one process; without it their series would merge.
_ROLE = "mesh.role"
ROLE_NODE = "node"
ROLE_ROUTER = "router"


def _attrs(**values: AttributeValue | None) -> dict[str, AttributeValue]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class NodeLoadSample:
    """One node's load at one moment: what the load gauges report for it."""

    running: int
    waiting: int
    kv_cache_usage: float | None = None


LoadSource = Callable[[], NodeLoadSample]


def _strong(source: LoadSource) -> Callable[[], LoadSource]:
    """A strong reference with WeakMethod's call shape."""
    return lambda: source


class _NodeLoads:
    """Load per node for the observable gauges: pushed samples, or live sources read at scrape.

    A live source that is a bound method is held weakly, so a node that is gone stops being
    reported instead of being kept alive by its gauges.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pushed: dict[str, NodeLoadSample] = {}
        self._sources: dict[str, Callable[[], LoadSource | None]] = {}

    def push(self, node: str, sample: NodeLoadSample) -> None:
        with self._lock:
            self._pushed[node] = sample

    def watch(self, node: str, source: LoadSource) -> None:
        ref: Callable[[], LoadSource | None] = (
            weakref.WeakMethod(source) if inspect.ismethod(source) else _strong(source)
        )
        with self._lock:
            self._sources[node] = ref

    def unwatch(self, node: str) -> None:
        with self._lock:
            self._sources.pop(node, None)

    def samples(self) -> dict[str, NodeLoadSample]:
        """Pushed samples, overridden by live sources (a source that fails is skipped)."""
        with self._lock:
            result = dict(self._pushed)
            sources = dict(self._sources)
        for node, ref in sources.items():
            source = ref()
            if source is None:
                self.unwatch(node)
                continue
            sample = safe_invoke(source)
            if sample is not None:
                result[node] = sample
        return result


class _Totals:
    """Running sums per attribute set, reported by an observable counter when metrics are read.

    Counted on every request (requests, cache lookups, cost): an SDK Counter.add validates and
    hashes its attributes and takes a lock per call, ~15 us each here; a dict increment under
    this lock is ~1 us, and the SDK sees the same cumulative, monotonic series at collection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[tuple[tuple[str, AttributeValue], ...], float] = {}

    def add(self, value: float, attributes: dict[str, AttributeValue]) -> None:
        key = tuple(attributes.items())
        with self._lock:
            self._sums[key] = self._sums.get(key, 0.0) + value

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            sums = list(self._sums.items())
        return [Observation(total, dict(key)) for key, total in sums]


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
        self._requests = _Totals()
        self.requests = meter.create_observable_counter(
            "mesh.requests",
            callbacks=[self._requests.observe],
            unit="{request}",
            description="Requests finished, by status",
        )
        self._guard_verdicts = _Totals()
        self.guard_verdicts = meter.create_observable_counter(
            "mesh.guard.verdicts",
            callbacks=[self._guard_verdicts.observe],
            unit="{verdict}",
            description="Guard verdicts by guard, stage, action and mode (errors by type)",
        )
        self._cache_lookups = _Totals()
        self.cache_lookups = meter.create_observable_counter(
            "mesh.cache.lookups",
            callbacks=[self._cache_lookups.observe],
            unit="{lookup}",
            description="Response cache lookups, hit or miss",
        )
        self._cache_savings = _Totals()
        self.cache_savings = meter.create_observable_counter(
            "mesh.cache.savings",
            callbacks=[self._cache_savings.observe],
            unit="USD",
            description="Cost not spent thanks to cache hits",
        )
        self._cost = _Totals()
        self.cost = meter.create_observable_counter(
            "mesh.cost",
            callbacks=[self._cost.observe],
            unit="USD",
            description="Cost of answered requests",
        )
        self.breaker_state = meter.create_gauge(
            "mesh.breaker.state",
            unit="1",
            description="Circuit breaker per node: 0 closed, 1 half-open, 2 open",
        )
        # Load gauges are observed when metrics are collected (a scrape), so they show the
        # engine's queue as it is then, not as it was at the last request.
        self._loads = _NodeLoads()
        self.node_running = meter.create_observable_gauge(
            "mesh.node.requests.running",
            callbacks=[self._observe_running],
            unit="{request}",
            description="Requests being generated",
        )
        self.node_waiting = meter.create_observable_gauge(
            "mesh.node.requests.waiting",
            callbacks=[self._observe_waiting],
            unit="{request}",
            description="Requests queued",
        )
        self.node_kv_cache = meter.create_observable_gauge(
            "mesh.node.kv_cache.usage",
            callbacks=[self._observe_kv_cache],
            unit="1",
            description="Share of KV cache in use (0..1)",
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
        node: str | None = None,
        role: str | None = None,
    ) -> None:
        """gen_ai.client.token.usage: one observation per token type.

        node: the node that ran the model; role: ROLE_NODE or ROLE_ROUTER (who observed it).
        """
        base = _attrs(
            **{
                sc.GEN_AI_OPERATION_NAME: operation,
                sc.GEN_AI_PROVIDER_NAME: provider,
                sc.GEN_AI_REQUEST_MODEL: request_model,
                sc.GEN_AI_RESPONSE_MODEL: response_model,
                _NODE: node,
                _ROLE: role,
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
        node: str | None = None,
        role: str | None = None,
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
                    _NODE: node,
                    _ROLE: role,
                }
            ),
        )

    @never_raises
    def record_time_to_first_token(
        self, seconds: float, *, provider: str, model: str, node: str | None = None
    ) -> None:
        """gen_ai.server.time_to_first_token, measured where the model runs."""
        self.time_to_first_token.record(
            seconds,
            _attrs(
                **{
                    sc.GEN_AI_OPERATION_NAME: sc.OPERATION_CHAT,
                    sc.GEN_AI_PROVIDER_NAME: provider,
                    sc.GEN_AI_REQUEST_MODEL: model,
                    _NODE: node,
                }
            ),
        )

    @never_raises
    def count_request(
        self,
        *,
        status: str,
        model: str | None = None,
        node: str | None = None,
        policy: str | None = None,
        role: str | None = None,
    ) -> None:
        """One finished request; status is the gRPC code name ("OK", "PERMISSION_DENIED", ...).

        role: ROLE_NODE or ROLE_ROUTER, so one request through `mesh up` is not one series.
        """
        self._requests.add(
            1,
            _attrs(
                **{
                    sc.MESH_STATUS: status.upper(),
                    _MODEL: model,
                    _NODE: node,
                    _POLICY: policy,
                    _ROLE: role,
                }
            ),
        )

    @never_raises
    def count_guard_verdict(
        self, *, guard: str, action: str, stage: str, mode: str = "enforce", error_type: str = ""
    ) -> None:
        """One guard verdict (allow, flag, redact, block); `mode` says whether it took effect
        (enforce) or was only recorded (monitor); a guard that failed names its error type."""
        attributes: dict[str, AttributeValue] = {
            _GUARD: guard,
            _STAGE: stage,
            _ACTION: action,
            _MODE: mode,
        }
        if error_type:
            attributes[sc.ERROR_TYPE] = error_type
        self._guard_verdicts.add(1, attributes)

    @never_raises
    def count_cache_lookup(
        self, *, hit: bool, kind: str = "exact", saved_usd: float | None = None
    ) -> None:
        """A cache lookup; on a hit, the cost the answer would have had goes to savings."""
        self._cache_lookups.add(1, {_HIT: hit, sc.MESH_CACHE_KIND: kind})
        if hit and saved_usd:
            self._cache_savings.add(saved_usd, {sc.MESH_CACHE_KIND: kind})

    @never_raises
    def add_cost(
        self, usd: float, *, model: str, node: str | None = None, provider: str | None = None
    ) -> None:
        """Money spent on one answered request."""
        if usd > 0:
            self._cost.add(
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
        """Load of a node as last reported (e.g. a heartbeat the router received)."""
        self._loads.push(node, NodeLoadSample(running, waiting, kv_cache_usage))

    @never_raises
    def watch_node_load(self, node: str, source: LoadSource) -> None:
        """Read a node's load from `source` at every collection (a node reporting itself)."""
        self._loads.watch(node, source)

    @never_raises
    def unwatch_node_load(self, node: str) -> None:
        """Stop reading a live source (the node stopped)."""
        self._loads.unwatch(node)

    def _observe(self, value: Callable[[NodeLoadSample], float | None]) -> Iterable[Observation]:
        samples = safe_invoke(self._loads.samples) or {}
        observations = []
        for node, sample in samples.items():
            observed = value(sample)
            if observed is not None:
                observations.append(Observation(observed, {_NODE: node}))
        return observations

    def _observe_running(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda s: s.running)

    def _observe_waiting(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda s: s.waiting)

    def _observe_kv_cache(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda s: s.kv_cache_usage)

"""Every span attribute the mesh writes, and the helpers that write them.

Names follow the OpenTelemetry GenAI conventions where one exists (`gen_ai.*`, including the
proposed guardrail span, open-telemetry/semantic-conventions#3233, whose names may still move:
they live here only, so a rename is one line) and `mesh.*` for the mesh's own facts.

The helpers never raise into the request and never put prompt or completion text on a span
unless the operator turned `capture_content` on; otherwise a hash and the size stand in.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from mesh.telemetry.safety import never_raises, safe_invoke

# --- GenAI (stable names in the incubating registry) -----------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"  # noqa: S105 (an attribute name)
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
OPERATION_CHAT = "chat"
OPERATION_APPLY_GUARDRAIL = "apply_guardrail"
TOKEN_TYPE_INPUT = "input"  # noqa: S105
TOKEN_TYPE_OUTPUT = "output"  # noqa: S105

# --- GenAI guardrail (proposed) ----------------------------------------------------------------
GEN_AI_GUARDIAN_NAME = "gen_ai.guardian.name"
GEN_AI_SECURITY_TARGET_TYPE = "gen_ai.security.target.type"
GEN_AI_SECURITY_DECISION_TYPE = "gen_ai.security.decision.type"
GEN_AI_SECURITY_POLICY_ID = "gen_ai.security.policy.id"
GEN_AI_SECURITY_POLICY_VERSION = "gen_ai.security.policy.version"
GEN_AI_SECURITY_FINDING_CATEGORIES = "gen_ai.security.finding.categories"
TARGET_LLM_INPUT = "llm_input"
TARGET_LLM_OUTPUT = "llm_output"
# The mesh's guard actions in the proposal's decision vocabulary.
GUARD_ACTION_TO_DECISION: Mapping[str, str] = {
    "pass": "allow",
    "allow": "allow",
    "monitor": "allow",
    "flag": "warn",
    "redact": "modify",
    "rewrite": "modify",
    "block": "deny",
    "reject": "deny",
}

# --- general ---------------------------------------------------------------------------------
ERROR_TYPE = "error.type"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
SERVICE_NAME = "service.name"
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
# HTTP server (stable HTTP semantic conventions), for the router's OpenAI-compatible front.
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
HTTP_SERVER_REQUEST_DURATION = "http.server.request.duration"
URL_PATH = "url.path"
URL_SCHEME = "url.scheme"
NETWORK_PROTOCOL_VERSION = "network.protocol.version"
CLIENT_ADDRESS = "client.address"
USER_AGENT_ORIGINAL = "user_agent.original"

# --- the mesh --------------------------------------------------------------------------------
MESH_REQUEST_ID = "mesh.request_id"
MESH_TENANT = "mesh.tenant"
MESH_NODE_ID = "mesh.node.id"
MESH_STATUS = "mesh.status"
MESH_ROUTE_POLICY = "mesh.route.policy"
MESH_ROUTE_POLICY_VERSION = "mesh.route.policy_version"
MESH_ROUTE_NODE = "mesh.route.node"
MESH_ROUTE_MODEL = "mesh.route.model"
MESH_ROUTE_PROVIDER = "mesh.route.provider"
MESH_ROUTE_CANDIDATES = "mesh.route.candidates"
MESH_ROUTE_REASON = "mesh.route.reason"
MESH_ROUTE_CACHE_HIT = "mesh.route.cache_hit"
MESH_ROUTE_ESTIMATED_COST = "mesh.route.estimated_cost_usd"
MESH_ROUTE_ACTUAL_COST = "mesh.route.actual_cost_usd"
MESH_ROUTE_BASELINE_COST = "mesh.route.baseline_cost_usd"
MESH_ROUTE_ATTEMPT = "mesh.route.attempt"
MESH_ROUTE_ATTEMPTS = "mesh.route.attempts"
MESH_GUARD_STAGE = "mesh.guard.stage"
MESH_GUARD_ACTION = "mesh.guard.action"
MESH_GUARD_MODE = "mesh.guard.mode"
MESH_GUARD_COUNT = "mesh.guard.count"
MESH_GUARD_NAMES = "mesh.guard.names"  # every guard of a chain run, in policy order
MESH_GUARD_DURATIONS_MS = "mesh.guard.durations_ms"  # their run times, in the same order
# True when the chain answered from its memory of texts it allowed untouched (guards/chain.py):
# no guard ran, so the durations are 0
MESH_GUARD_REMEMBERED = "mesh.guard.remembered"
MESH_GUARD_DURATION_MS = "mesh.guard.duration_ms"
MESH_GUARD_CHUNK_OFFSET = "mesh.guard.chunk_offset"
# The event a guard-chain span carries per guard (and a stream's current span per notable
# chunk check). The proposal has no per-guard event (its gen_ai.security.finding event is per
# finding and may carry content), hence a mesh name.
GUARD_EVENT = "mesh.guard.run"
MESH_CACHE_KIND = "mesh.cache.kind"
# A semantic lookup: the served candidate's cosine, the verifier's verdict (categories only,
# never prompt words) and how many nearer candidates it vetoed.
MESH_CACHE_SIMILARITY = "mesh.cache.similarity"
MESH_CACHE_VERIFICATION = "mesh.cache.verification"
MESH_CACHE_VETOED = "mesh.cache.vetoed"
MESH_INPUT_SHA256 = "mesh.input.sha256"
MESH_INPUT_CHARS = "mesh.input.chars"
MESH_INPUT_MESSAGES = "mesh.input.messages"
MESH_OUTPUT_SHA256 = "mesh.output.sha256"
MESH_OUTPUT_CHARS = "mesh.output.chars"
MESH_ENGINE_PHASE = "mesh.engine.phase"

# Codes that mean "the server failed", per the gRPC semantic conventions for server spans.
# Client mistakes, guard blocks (PERMISSION_DENIED / INVALID_ARGUMENT), budgets
# (RESOURCE_EXHAUSTED) and cancellations are outcomes, not errors.
SERVER_FAULT_CODES = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
_TRACER_NAME = "mesh"


@functools.cache
def _default_tracer() -> Tracer:
    """The global tracer, looked up once: `trace.get_tracer` per span was ~6% of the router's
    GIL time at concurrency 32 (py-spy). Before a provider is set this is OTel's proxy, which
    follows the provider set later."""
    return trace.get_tracer(_TRACER_NAME)


def is_server_fault(code: str) -> bool:
    """Whether a gRPC status code name marks the span as an error."""
    return code.upper() in SERVER_FAULT_CODES


def code_of(exc: BaseException) -> str:
    """The gRPC status code name an exception ends a call with."""
    code = getattr(exc, "code", None)
    value = code() if callable(code) else code  # grpc.RpcError.code() vs MeshError.code
    name = getattr(value, "name", None) or getattr(value, "value", None)
    if isinstance(name, str):
        return name.upper()
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "CANCELLED"
    return "UNKNOWN"


@never_raises
def mark_outcome(span: Span, code: str, description: str = "") -> None:
    """Record how an operation ended: error.type always, ERROR status only for server faults."""
    code = code.upper()
    if code == "OK":
        return
    span.set_attribute(ERROR_TYPE, code)
    if is_server_fault(code):
        span.set_status(Status(StatusCode.ERROR, f"{code}: {description}" if description else code))


# gRPC status codes by name (fixed by the gRPC spec), for rpc.grpc.status_code without grpc here.
GRPC_STATUS_CODES: Mapping[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        )
    )
}


@never_raises
def mark_rpc_outcome(span: Span, code: str, description: str = "") -> None:
    """`mark_outcome` for a span that stands for a gRPC call (an attempt span made with
    rpc_method), plus the call's rpc.grpc.status_code, as the client interceptor's span had."""
    number = GRPC_STATUS_CODES.get(code.upper())
    if number is not None:
        span.set_attribute(RPC_GRPC_STATUS_CODE, number)
    mark_outcome(span, code, description)


# The exception event's own attributes (OTel exception conventions) and the mesh's mark of an
# error whose message is caller-safe (mesh.telemetry.redaction keeps only those messages).
EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
MESH_ERROR_REASON = "mesh.error.reason"


def _record_failure(span: Span, exc: BaseException) -> None:
    """An exception event with the type, and the message only when it is caller-safe.

    A MeshError (duck-typed: a str `message` and `reason`; telemetry does not import the
    contract) says nothing it could not say to the caller; any other message may quote
    content, so it is left out. No stack trace: its frames quote arguments and messages.
    """
    code = code_of(exc)
    message = getattr(exc, "message", None)
    reason = getattr(exc, "reason", None)
    attributes: dict[str, AttributeValue] = {EXCEPTION_TYPE: type(exc).__qualname__}
    safe_message = ""
    if isinstance(message, str) and isinstance(reason, str):
        safe_message = message
        attributes[EXCEPTION_MESSAGE] = message
        attributes[MESH_ERROR_REASON] = reason
    if code != "CANCELLED":
        span.add_event(EXCEPTION_EVENT, attributes)
    mark_outcome(span, code, safe_message)


def _clean(attributes: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {k: v for k, v in attributes.items() if v is not None}


@contextmanager
def _span(
    tracer: Tracer | None,
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, AttributeValue | None],
) -> Iterator[Span]:
    """A current span that records failures our way and can never raise on its own.

    Built by hand rather than with `start_as_current_span` so that the span's own bookkeeping
    sits inside safe_invoke, while the request's exceptions pass through untouched.
    """
    chosen = tracer if tracer is not None else _default_tracer()
    span = safe_invoke(chosen.start_span, name, kind=kind, attributes=_clean(attributes))
    if span is None:
        span = INVALID_SPAN
    token = safe_invoke(otel_context.attach, trace.set_span_in_context(span))
    try:
        yield span
    except BaseException as exc:
        safe_invoke(_record_failure, span, exc)
        raise
    finally:
        if token is not None:
            safe_invoke(otel_context.detach, token)
        safe_invoke(span.end)


# --- spans -----------------------------------------------------------------------------------
def route_span(
    policy: str,
    *,
    request_id: str | None = None,
    tenant: str | None = None,
    policy_version: str | None = None,
    tracer: Tracer | None = None,
) -> AbstractContextManager[Span]:
    """The route decision and everything forwarded under it (attempt spans are its children).

    Fill in the decision with `record_route` once it is known and the final cost at the end.
    """
    return _span(
        tracer,
        f"route {policy}",
        SpanKind.INTERNAL,
        {
            MESH_ROUTE_POLICY: policy,
            MESH_REQUEST_ID: request_id or None,
            MESH_TENANT: tenant,
            MESH_ROUTE_POLICY_VERSION: policy_version,
        },
    )


def attempt_span(
    model: str,
    provider: str,
    *,
    attempt: int = 1,
    node: str | None = None,
    server_address: str | None = None,
    rpc_method: str | None = None,
    stream: bool = False,
    max_tokens: int | None = None,
    temperature: float | None = None,
    tracer: Tracer | None = None,
) -> AbstractContextManager[Span]:
    """One CLIENT span per upstream attempt, named `chat {model}` per the GenAI conventions.

    It is the only client span of the call: pass `outgoing_metadata(span)` as the stub call's
    metadata and the node's server span becomes its child, with no client interceptor on the
    channel (that interceptor made a second CLIENT span for the same call). `rpc_method`, the
    full gRPC method (`/mesh.v1.InferenceService/Generate`), adds the rpc.* attributes that
    interceptor's span carried; end a failed call with `mark_rpc_outcome(span, code.name, ...)`
    so rpc.grpc.status_code says how.
    """
    attributes = _attempt_attributes(
        model, provider, attempt, node, server_address, rpc_method, stream, max_tokens, temperature
    )
    return _span(tracer, f"{OPERATION_CHAT} {model}", SpanKind.CLIENT, attributes)


def _attempt_attributes(
    model: str,
    provider: str,
    attempt: int,
    node: str | None,
    server_address: str | None,
    rpc_method: str | None,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
) -> dict[str, AttributeValue | None]:
    host, port = _split_address(server_address)
    service, method = _split_method(rpc_method)
    return {
        GEN_AI_OPERATION_NAME: OPERATION_CHAT,
        GEN_AI_PROVIDER_NAME: provider,
        GEN_AI_REQUEST_MODEL: model,
        GEN_AI_REQUEST_STREAM: stream,
        GEN_AI_REQUEST_MAX_TOKENS: max_tokens,
        GEN_AI_REQUEST_TEMPERATURE: temperature,
        MESH_ROUTE_ATTEMPT: attempt,
        MESH_ROUTE_NODE: node,
        SERVER_ADDRESS: host,
        SERVER_PORT: port,
        RPC_SYSTEM: "grpc" if method else None,
        RPC_SERVICE: service,
        RPC_METHOD: method,
        RPC_GRPC_STATUS_CODE: 0 if method else None,  # until mark_rpc_outcome says otherwise
    }


def start_route_span(
    tracer: Tracer | None,
    policy: str,
    *,
    request_id: str | None = None,
    tenant: str | None = None,
) -> Span:
    """A `route <policy>` span under the current one, NOT made current: the router's pipeline
    ends it itself, and keeps it off the context so a stream's `yield`s cannot detach it."""
    chosen = tracer if tracer is not None else _default_tracer()
    span = safe_invoke(
        chosen.start_span,
        f"route {policy}",
        kind=SpanKind.INTERNAL,
        attributes=_clean(
            {MESH_ROUTE_POLICY: policy, MESH_REQUEST_ID: request_id or None, MESH_TENANT: tenant}
        ),
    )
    return span if span is not None else INVALID_SPAN


def start_attempt_span(
    tracer: Tracer | None,
    parent: Span,
    model: str,
    provider: str,
    *,
    attempt: int = 1,
    node: str | None = None,
    server_address: str | None = None,
    rpc_method: str | None = None,
    stream: bool = False,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> Span:
    """`attempt_span`, started as a child of `parent` and NOT made current (the router's
    forward stage ends it itself, across a stream's `yield`s); propagate it with
    `outgoing_metadata(span)` and end a failed call with `mark_rpc_outcome`."""
    chosen = tracer if tracer is not None else _default_tracer()
    attributes = _attempt_attributes(
        model, provider, attempt, node, server_address, rpc_method, stream, max_tokens, temperature
    )
    span = safe_invoke(
        chosen.start_span,
        f"{OPERATION_CHAT} {model}",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        attributes=_clean(attributes),
    )
    return span if span is not None else INVALID_SPAN


@never_raises
def end_span(span: Span, exc: BaseException | None = None) -> None:
    """End a span started with `start_*_span`, recording a failure the way `_span` does."""
    if exc is not None:
        _record_failure(span, exc)
    span.end()


def outgoing_metadata(
    span: Span, base: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    """`base` plus the W3C trace context of `span` (traceparent, tracestate, baggage), as gRPC
    metadata pairs for the call the span stands for.

    Uses the process's global propagator (OTEL_PROPAGATORS; default tracecontext + baggage),
    as the client interceptor did. A span that is not sampled still propagates its context
    (flag 00), so the node follows the router's sampling decision. Keys are lower-cased, as gRPC
    requires; a propagator failure costs the trace link, never the call.
    """
    carrier: dict[str, str] = {}
    safe_invoke(propagate.inject, carrier, trace.set_span_in_context(span))
    if not carrier:
        return tuple(base)
    return (*base, *((key.lower(), value) for key, value in carrier.items()))


def guard_chain_span(
    stage: str,
    *,
    guards: int,
    policy_id: str | None = None,
    policy_version: str | None = None,
    tracer: Tracer | None = None,
) -> AbstractContextManager[Span]:
    """One span per guard-chain run on an input or a whole output: `apply_guardrail {target}`.

    The proposal (open-telemetry/semantic-conventions#3233) names a span
    `apply_guardrail {guardian} {target}` and falls back to `apply_guardrail {target}` when no
    single guardian applies, as for a chain of them. Each guard is an event on it
    (`record_guard_event`); the combined decision comes last (`record_chain_verdict`). The span
    is current while the guards run, so a CPU-heavy guard's own spans (in its worker thread,
    which copies the context) nest under it. stage is "input" or "output".
    """
    target = TARGET_LLM_OUTPUT if stage == "output" else TARGET_LLM_INPUT
    return _span(
        tracer,
        f"{OPERATION_APPLY_GUARDRAIL} {target}",
        SpanKind.INTERNAL,
        _chain_attributes(stage, guards, policy_id, policy_version),
    )


def _chain_attributes(
    stage: str, guards: int, policy_id: str | None, policy_version: str | None
) -> dict[str, AttributeValue]:
    target = TARGET_LLM_OUTPUT if stage == "output" else TARGET_LLM_INPUT
    return _clean(
        {
            GEN_AI_OPERATION_NAME: OPERATION_APPLY_GUARDRAIL,
            GEN_AI_SECURITY_TARGET_TYPE: target,
            MESH_GUARD_STAGE: stage,
            MESH_GUARD_COUNT: guards,
            GEN_AI_SECURITY_POLICY_ID: policy_id,
            GEN_AI_SECURITY_POLICY_VERSION: policy_version,
        }
    )


def start_guard_chain_span(
    stage: str,
    *,
    guards: int,
    start_ns: int,
    policy_id: str | None = None,
    policy_version: str | None = None,
    tracer: Tracer | None = None,
) -> Span:
    """`guard_chain_span` made after the fact, from the chain's measured start (fast guards
    ran inline, and only then was it known that the run deserves a span). Not current; the
    caller adds the events and the verdict and ends it."""
    target = TARGET_LLM_OUTPUT if stage == "output" else TARGET_LLM_INPUT
    chosen = tracer if tracer is not None else _default_tracer()
    span = safe_invoke(
        chosen.start_span,
        f"{OPERATION_APPLY_GUARDRAIL} {target}",
        kind=SpanKind.INTERNAL,
        attributes=_chain_attributes(stage, guards, policy_id, policy_version),
        start_time=start_ns,
    )
    return span if span is not None else INVALID_SPAN


@never_raises
def record_allowed_chain(
    span: Span,
    stage: str,
    *,
    guards: Sequence[str],
    durations_ms: Sequence[float],
    end_ns: int,
    policy_id: str | None = None,
    policy_version: str | None = None,
    remembered: bool = False,
) -> None:
    """A guard chain that let the text through unchanged, as ONE `apply_guardrail {target}`
    event on the current span (the request's server span) instead of a span of its own.

    Most requests pass every guard; a span per chain run cost ~35 us of the request's thread
    here (sampling, ids, context, processor), an event a fraction of it. Anything a guard did
    (block, redact, flag, a would-be action in monitor mode, an error) still gets its span.
    """
    attributes = _chain_attributes(stage, len(guards), policy_id, policy_version)
    attributes[GEN_AI_SECURITY_DECISION_TYPE] = "allow"
    attributes[MESH_GUARD_NAMES] = list(guards)
    attributes[MESH_GUARD_DURATIONS_MS] = list(durations_ms)
    if remembered:
        attributes[MESH_GUARD_REMEMBERED] = True
    target = TARGET_LLM_OUTPUT if stage == "output" else TARGET_LLM_INPUT
    span.add_event(f"{OPERATION_APPLY_GUARDRAIL} {target}", attributes, timestamp=end_ns)


def _split_method(full_method: str | None) -> tuple[str | None, str | None]:
    """`/package.Service/Method` -> (package.Service, Method)."""
    if not full_method:
        return None, None
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or None, method or None


def _split_address(address: str | None) -> tuple[str | None, int | None]:
    if not address:
        return None, None
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit():
        return host.strip("[]"), int(port)
    return address, None


# --- attributes on spans ----------------------------------------------------------------------
@never_raises
def tag_request(request_id: str, *, tenant: str | None = None, span: Span | None = None) -> None:
    """Put the request id on a span (default: the current one, e.g. the RPC server span),
    so `mesh trace --request ID` finds the trace from any process."""
    target = span if span is not None else trace.get_current_span()
    target.set_attributes(_clean({MESH_REQUEST_ID: request_id or None, MESH_TENANT: tenant}))


@never_raises
def record_route(
    span: Span,
    *,
    node: str,
    model: str,
    provider: str | None = None,
    candidates: int | None = None,
    reason: str | None = None,
    cache_hit: bool | None = None,
    estimated_cost_usd: float | None = None,
    baseline_cost_usd: float | None = None,
) -> None:
    """The decision: where the request goes and why."""
    span.set_attributes(
        _clean(
            {
                MESH_ROUTE_NODE: node,
                MESH_ROUTE_MODEL: model,
                MESH_ROUTE_PROVIDER: provider,
                MESH_ROUTE_CANDIDATES: candidates,
                MESH_ROUTE_REASON: reason,
                MESH_ROUTE_CACHE_HIT: cache_hit,
                MESH_ROUTE_ESTIMATED_COST: estimated_cost_usd,
                MESH_ROUTE_BASELINE_COST: baseline_cost_usd,
            }
        )
    )


@never_raises
def record_cache_lookup(
    span: Span,
    *,
    kind: str,
    similarity: float | None = None,
    verification: str | None = None,
    vetoed: int | None = None,
) -> None:
    """How the cache answered (or why a near match was not served)."""
    span.set_attributes(
        _clean(
            {
                MESH_CACHE_KIND: kind,
                MESH_CACHE_SIMILARITY: similarity,
                MESH_CACHE_VERIFICATION: verification,
                MESH_CACHE_VETOED: vetoed,
            }
        )
    )


@never_raises
def record_route_result(
    span: Span, *, attempts: int, actual_cost_usd: float | None = None, node: str | None = None
) -> None:
    """What happened after the decision: attempts made, the node that answered, real cost."""
    span.set_attributes(
        _clean(
            {
                MESH_ROUTE_ATTEMPTS: attempts,
                MESH_ROUTE_ACTUAL_COST: actual_cost_usd,
                MESH_ROUTE_NODE: node,
            }
        )
    )


@never_raises
def record_usage(
    span: Span,
    *,
    input_tokens: int,
    output_tokens: int,
    response_model: str | None = None,
    finish_reasons: Sequence[str] = (),
    cached_input_tokens: int | None = None,
    response_id: str | None = None,
) -> None:
    """Token counts and how the generation ended, on an attempt (or node) span."""
    span.set_attributes(
        _clean(
            {
                GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
                GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
                GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cached_input_tokens,
                GEN_AI_RESPONSE_MODEL: response_model,
                GEN_AI_RESPONSE_FINISH_REASONS: list(finish_reasons) if finish_reasons else None,
                GEN_AI_RESPONSE_ID: response_id,
            }
        )
    )


@never_raises
def record_first_chunk(span: Span, seconds: float) -> None:
    """Time from sending the request to the first chunk (the streaming commit point)."""
    span.set_attribute(GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, seconds)


def decision_of(action: str) -> str:
    """The proposal's decision type for one of the mesh's guard actions."""
    return GUARD_ACTION_TO_DECISION.get(action.lower(), "allow")


@never_raises
def record_verdict(
    span: Span,
    *,
    action: str,
    categories: Sequence[str] = (),
    decision: str | None = None,
) -> None:
    """A guard's or a chain's verdict; a block is an outcome (decision "deny"), never a span
    error."""
    span.set_attributes(
        _clean(
            {
                MESH_GUARD_ACTION: action,
                GEN_AI_SECURITY_DECISION_TYPE: decision or decision_of(action),
                GEN_AI_SECURITY_FINDING_CATEGORIES: sorted(set(categories)) or None,
            }
        )
    )


@never_raises
def record_guard_event(
    span: Span,
    guard: str,
    *,
    action: str,
    end_ns: int,
    duration_ns: int,
    categories: Sequence[str] = (),
    decision: str | None = None,
    mode: str | None = None,
    error_type: str | None = None,
    stage: str | None = None,
    chunk_offset: int | None = None,
    policy_version: str | None = None,
) -> None:
    """One guard's run as a `mesh.guard.run` event on `span`, stamped at its end (when the
    decision was made). Never text.

    Always: the guard's name, its decision, its duration. Only when they say something the
    decision does not: the mesh action (a monitored guard's would-be action beside decision
    "allow"; an enforced action follows from its decision), a mode other than enforce, finding
    categories, error.type. Each attribute is validated by the SDK on the request's thread
    (~2 µs here), and a chain has an event per guard on every request.
    stage, chunk_offset and policy_version are for events outside a chain span (a stream's
    notable chunk checks, put on whatever span is current), which has none of them.
    """
    decided = decision or decision_of(action)
    attributes: dict[str, AttributeValue] = {
        GEN_AI_GUARDIAN_NAME: guard,
        GEN_AI_SECURITY_DECISION_TYPE: decided,
        MESH_GUARD_DURATION_MS: duration_ns / 1e6,
    }
    if decided != decision_of(action):
        attributes[MESH_GUARD_ACTION] = action
    if mode and mode != "enforce":
        attributes[MESH_GUARD_MODE] = mode
    if categories:
        attributes[GEN_AI_SECURITY_FINDING_CATEGORIES] = sorted(set(categories))
    if error_type:
        attributes[ERROR_TYPE] = error_type
    if stage is not None:
        attributes[MESH_GUARD_STAGE] = stage
        attributes[GEN_AI_SECURITY_TARGET_TYPE] = (
            TARGET_LLM_OUTPUT if stage == "output" else TARGET_LLM_INPUT
        )
    if chunk_offset is not None:
        attributes[MESH_GUARD_CHUNK_OFFSET] = chunk_offset
    if policy_version:
        attributes[GEN_AI_SECURITY_POLICY_VERSION] = policy_version
    span.add_event(GUARD_EVENT, attributes, timestamp=end_ns)


@never_raises
def record_chain_verdict(
    span: Span,
    *,
    action: str,
    categories: Sequence[str] = (),
    failed_guard: str | None = None,
    error_type: str | None = None,
    guards: Sequence[str] = (),
    durations_ms: Sequence[float] = (),
) -> None:
    """The chain's combined decision on its span, with every guard that ran and its time. A
    guard that failed is a fault of the mesh: error.type and an ERROR status naming the guard
    (its message may quote content, so only the type is recorded); a block is an outcome,
    never an error."""
    record_verdict(span, action=action, categories=categories)
    if guards:
        span.set_attributes({MESH_GUARD_NAMES: guards, MESH_GUARD_DURATIONS_MS: durations_ms})
    if error_type:
        span.set_attribute(ERROR_TYPE, error_type)
        span.set_status(
            Status(StatusCode.ERROR, f"guard {failed_guard or '?'} failed: {error_type}")
        )


def content_digest(text: str) -> str:
    """sha256 of the text, first 16 hex digits: lets two spans be compared, reveals nothing."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@never_raises
def record_input(
    span: Span, messages: Sequence[tuple[str, str]], *, capture_content: bool = False
) -> None:
    """The prompt: (role, text) pairs, already redacted by the guards when captured.

    Off (the default): only a digest, the character count and the number of messages.
    """
    joined = "\n".join(text for _, text in messages)
    span.set_attributes(
        {
            MESH_INPUT_SHA256: content_digest(joined),
            MESH_INPUT_CHARS: len(joined),
            MESH_INPUT_MESSAGES: len(messages),
        }
    )
    if capture_content:
        span.set_attribute(
            GEN_AI_INPUT_MESSAGES,
            json.dumps(
                [{"role": r, "parts": [{"type": "text", "content": t}]} for r, t in messages],
                ensure_ascii=False,
            ),
        )


@never_raises
def record_output(
    span: Span, text: str, *, finish_reason: str = "", capture_content: bool = False
) -> None:
    """The completion, under the same rule as `record_input`."""
    span.set_attributes({MESH_OUTPUT_SHA256: content_digest(text), MESH_OUTPUT_CHARS: len(text)})
    if capture_content:
        message: dict[str, Any] = {
            "role": "assistant",
            "parts": [{"type": "text", "content": text}],
        }
        if finish_reason:
            message["finish_reason"] = finish_reason
        span.set_attribute(GEN_AI_OUTPUT_MESSAGES, json.dumps([message], ensure_ascii=False))


@never_raises
def record_engine_phases(
    *,
    queued_ns: int | None,
    scheduled_ns: int | None,
    first_token_ns: int | None,
    finished_ns: int | None,
    tracer: Tracer | None = None,
) -> None:
    """Child spans `engine queue` / `engine prefill` / `engine decode` of the current span.

    Times are epoch nanoseconds (time.time_ns()) as the engine reports them after the fact;
    a phase whose ends are unknown is skipped rather than guessed.
    """
    chosen = tracer if tracer is not None else _default_tracer()
    phases = (
        ("queue", queued_ns, scheduled_ns),
        ("prefill", scheduled_ns, first_token_ns),
        ("decode", first_token_ns, finished_ns),
    )
    for phase, start, end in phases:
        if start is None or end is None or end <= start:
            continue  # unreported, or no such phase (a one-token answer has no decode)
        span = chosen.start_span(
            f"engine {phase}", start_time=start, attributes={MESH_ENGINE_PHASE: phase}
        )
        span.end(end_time=end)


def now_ns() -> int:
    """Epoch nanoseconds, the clock spans use."""
    return time.time_ns()

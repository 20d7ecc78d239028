"""Request validation shared by every node, so bad input fails the same way everywhere.

Every problem found becomes one BadRequest field violation; all of them are reported at once
rather than one per round trip.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

from mesh.contract.errors import FieldViolation, InvalidRequest
from mesh.v1 import types_pb2

MAX_MESSAGES = 1024
MAX_STOP_STRINGS = 8
MAX_STOP_LENGTH = 128
MAX_REQUEST_ID_LENGTH = 128
MAX_TOKENS_LIMIT = 1 << 20
MAX_CAPABILITIES = 32
MAX_CAPABILITY_LENGTH = 64
MAX_LATENCY_SLO_S = 3600


class GenerationLike(Protocol):
    """GenerateRequest and GenerateStreamRequest share these fields (and their wire format)."""

    @property
    def messages(self) -> Sequence[types_pb2.ChatMessage]: ...  # pragma: no cover

    @property
    def sampling(self) -> types_pb2.SamplingParams: ...  # pragma: no cover

    @property
    def request_id(self) -> str: ...  # pragma: no cover


def message_violations(messages: Sequence[types_pb2.ChatMessage]) -> list[FieldViolation]:
    if not messages:
        return [FieldViolation("messages", "at least one message is required")]
    if len(messages) > MAX_MESSAGES:
        return [FieldViolation("messages", f"at most {MAX_MESSAGES} messages are allowed")]
    problems = []
    for i, message in enumerate(messages):
        if message.role == types_pb2.ROLE_UNSPECIFIED or message.role not in (
            types_pb2.ROLE_SYSTEM,
            types_pb2.ROLE_USER,
            types_pb2.ROLE_ASSISTANT,
        ):
            problems.append(
                FieldViolation(
                    f"messages[{i}].role", "must be ROLE_SYSTEM, ROLE_USER or ROLE_ASSISTANT"
                )
            )
        if not message.content.strip():
            problems.append(FieldViolation(f"messages[{i}].content", "must not be empty"))
    if not any(m.role == types_pb2.ROLE_USER for m in messages):
        problems.append(FieldViolation("messages", "at least one ROLE_USER message is required"))
    return problems


def sampling_violations(sampling: types_pb2.SamplingParams) -> list[FieldViolation]:
    problems = []
    if sampling.HasField("temperature") and not 0.0 <= sampling.temperature <= 2.0:
        problems.append(FieldViolation("sampling.temperature", "must be within [0, 2]"))
    if sampling.HasField("top_p") and not 0.0 < sampling.top_p <= 1.0:
        problems.append(FieldViolation("sampling.top_p", "must be within (0, 1]"))
    if sampling.HasField("top_k") and sampling.top_k < 0:
        problems.append(FieldViolation("sampling.top_k", "must be >= 0 (0 disables it)"))
    if sampling.HasField("max_tokens") and not 1 <= sampling.max_tokens <= MAX_TOKENS_LIMIT:
        problems.append(
            FieldViolation("sampling.max_tokens", f"must be within [1, {MAX_TOKENS_LIMIT}]")
        )
    if len(sampling.stop) > MAX_STOP_STRINGS:
        problems.append(FieldViolation("sampling.stop", f"at most {MAX_STOP_STRINGS} strings"))
    for i, stop in enumerate(sampling.stop):
        if not stop or len(stop) > MAX_STOP_LENGTH:
            problems.append(
                FieldViolation(f"sampling.stop[{i}]", f"must be 1..{MAX_STOP_LENGTH} characters")
            )
    return problems


def routing_violations(hints: types_pb2.RoutingHints) -> list[FieldViolation]:
    """Hints that would otherwise be read as something else: a NaN or negative cost cap was
    no cap at all (every comparison with it is false), a negative SLO always missed."""
    problems = []
    cap = hints.max_cost_usd
    if not (math.isfinite(cap) and cap >= 0):
        problems.append(
            FieldViolation("routing.max_cost_usd", "must be a finite amount >= 0 (0: no limit)")
        )
    slo = hints.latency_slo
    if slo.seconds < 0 or slo.nanos < 0 or slo.seconds > MAX_LATENCY_SLO_S:
        problems.append(
            FieldViolation("routing.latency_slo", f"must be within [0, {MAX_LATENCY_SLO_S}] s")
        )
    capabilities = hints.require_capabilities
    if len(capabilities) > MAX_CAPABILITIES:
        problems.append(
            FieldViolation("routing.require_capabilities", f"at most {MAX_CAPABILITIES} names")
        )
    elif any(not c or len(c) > MAX_CAPABILITY_LENGTH for c in capabilities):
        problems.append(
            FieldViolation(
                "routing.require_capabilities",
                f"each name must be 1..{MAX_CAPABILITY_LENGTH} characters",
            )
        )
    return problems


def request_id_violations(request_id: str) -> list[FieldViolation]:
    """A caller's request id goes into logs, metadata to upstreams and the ledger: printable
    ASCII without spaces (a UUID, a ULID, a trace-style id), never a line break or a NUL."""
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        return [FieldViolation("request_id", f"at most {MAX_REQUEST_ID_LENGTH} characters")]
    if request_id and not _REQUEST_ID.fullmatch(request_id):
        return [
            FieldViolation("request_id", "printable ASCII without spaces or control characters")
        ]
    return []


_REQUEST_ID = re.compile(r"[\x21-\x7e]+")


def validate_generation(request: GenerationLike) -> None:
    """Raise InvalidRequest listing every problem of a (stream) generation request."""
    problems = message_violations(list(request.messages))
    problems += sampling_violations(request.sampling)
    problems += request_id_violations(request.request_id)
    routing = getattr(request, "routing", None)
    if routing is not None:
        problems += routing_violations(routing)
    if problems:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems)
        raise InvalidRequest(f"invalid request: {summary}", violations=problems)

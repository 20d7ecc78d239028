"""The mesh's one root exception and its subclasses.

Code below the transport edge (guards, nodes, routing) raises these; exactly one mapper
(`mesh.contract.status`) turns them into gRPC statuses, so no module but that one needs to know
gRPC status codes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Code(enum.Enum):
    """Transport-neutral status codes; names match google.rpc.Code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    INTERNAL = "INTERNAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    # Only relayed from upstreams (mesh.contract.status.relayed_error); the mesh raises none.
    UNKNOWN = "UNKNOWN"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    DATA_LOSS = "DATA_LOSS"


ERROR_DOMAIN = "mesh.inference"
ECHO_LIMIT = 128


def echo(value: str, limit: int = ECHO_LIMIT) -> str:
    """Client input quoted back in an error message or metadata, at most `limit` characters.

    A status travels in HTTP/2 trailers, which a client refuses above 8-16 KiB: a 1 MB model
    name echoed whole turns NOT_FOUND into RESOURCE_EXHAUSTED "Stream removed". Every place
    that quotes what the caller sent goes through here; the marker says how much was cut.
    """
    if len(value) <= limit:
        return value
    return f"{value[:limit]}…[{len(value) - limit} more chars]"


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one request field (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class MeshError(Exception):
    """An error with a stable machine-readable reason, safe to show to the caller.

    `message` must never contain secrets or prompt text: it goes to clients and logs as is.
    `retryable` travels on the wire as a google.rpc.RetryInfo (AIP-194), so a router decides
    whether to try the next node from what the node said, not from a guess about status codes.
    """

    code: Code = Code.INTERNAL
    reason: str = "INTERNAL"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
        retry_after_s: float | None = None,
        code: Code | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: list[FieldViolation] = list(violations or [])
        self.retry_after_s = retry_after_s


class InvalidRequest(MeshError):
    """The request itself is wrong; retrying it unchanged cannot help."""

    code = Code.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"


class ModelNotFound(MeshError):
    """No node in the mesh serves the pinned model."""

    code = Code.NOT_FOUND
    reason = "MODEL_NOT_FOUND"


class UpstreamUnavailable(MeshError):
    """The node (or provider) that should serve the request cannot be reached."""

    code = Code.UNAVAILABLE
    reason = "UPSTREAM_UNAVAILABLE"
    retryable = True


class Overloaded(MeshError):
    """Admission control refused the request; the caller may retry after a delay."""

    code = Code.RESOURCE_EXHAUSTED
    reason = "OVERLOADED"
    retryable = True


class EngineUnavailable(MeshError):
    """The local engine is dead or unhealthy."""

    code = Code.UNAVAILABLE
    reason = "ENGINE_UNAVAILABLE"
    retryable = True


class DeadlineExceeded(MeshError):
    """The caller's deadline passed before the answer was complete."""

    code = Code.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


@dataclass
class ErrorDetails:
    """What a client learns from a failed call, parsed back from google.rpc details."""

    code: str
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)
    retry_after_s: float | None = None
    retryable: bool = False  # the server attached RetryInfo: trying again (elsewhere) may work

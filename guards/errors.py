"""Errors raised by the guard layer; the transport edge maps them to gRPC statuses."""

from __future__ import annotations

from mesh.contract.errors import Code, FieldViolation, MeshError


class InvalidPolicy(MeshError):
    """A policy document failed validation; the active policy stays in force."""

    code = Code.INVALID_ARGUMENT
    reason = "INVALID_POLICY"

    @classmethod
    def at(cls, source: str, line: int | None, field: str, problem: str) -> InvalidPolicy:
        where = f"{source}:{line}" if line is not None else source
        location = f" at {field}" if field else ""
        return cls(
            f"{where}: invalid policy{location}: {problem}",
            metadata={"source": source, "line": str(line or 0), "field": field},
            violations=[FieldViolation(field or "policy", problem)],
        )


class UnknownGuard(ValueError):
    """A policy's `use` names no built-in guard and no importable validator.

    Raised while a policy is built, before any request, and turned into InvalidPolicy there.
    """


class GuardBlocked(MeshError):
    """An enforced guard refused the request or stopped the response."""

    code = Code.PERMISSION_DENIED
    reason = "GUARD_BLOCKED"


class AdminKeyMissing(MeshError):
    """A PolicyService call came without an admin key."""

    code = Code.UNAUTHENTICATED
    reason = "ADMIN_KEY_MISSING"


class AdminKeyRejected(MeshError):
    """A PolicyService call came with a key that is not an admin key."""

    code = Code.PERMISSION_DENIED
    reason = "ADMIN_KEY_REJECTED"


class GuardFailure(Exception):
    """A guard raised or timed out; the chain applies the guard's `on_error`.

    `error_type` ("timeout" or the exception's class name) is what telemetry may record: the
    message can quote the checked text.
    """

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type

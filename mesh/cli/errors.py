"""The one error boundary of the `mesh` command: a known failure is one line, not a traceback.

Every subcommand runs inside `error_boundary()` (the root group's `invoke`), so commands raise
the domain's own exceptions and none of them catches-and-reprints. What counts as known:

- `ConfigError` and the key/token-source errors (a variable unset, a file unreadable, a bridge
  that cannot be built from its config): exit 2, the configuration or the flags must change;
- `MeshError` raised here and a gRPC `RpcError` from a client command: the status code and
  reason, the message, field problems and metadata on one line; exit 2 when the server refused
  the request itself (`CALLER_FAULT_CODES`: retrying it unchanged cannot help), else 1;
- `OSError` on a file, and `ClickException`s that commands raise: exit 1 (or the exception's).

Anything else is a bug and keeps its traceback; `MESH_DEBUG=1` keeps it for the known kinds
too. Click's own usage errors (unknown option, bad value) keep click's usage message, exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from mesh.contract.errors import ErrorDetails, MeshError

USAGE_EXIT = 2
RUNTIME_EXIT = 1

# google.rpc codes that mean "the request was refused as it stands" (AIP-193): exit 2.
CALLER_FAULT_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
    }
)

# Errors that name a configuration or key source at fault: (defining module, class), exit 2.
# Looked up in sys.modules instead of imported: a class whose module was never imported cannot
# be the one raised, and importing nodes/ or pydantic configs here would slow every command.
CONFIG_ERRORS = (
    ("mesh.config", "ConfigError"),
    ("mesh.contract.node_token", "TokenUnavailable"),
    ("mesh.contract.tls", "TlsUnavailable"),
    ("mesh.config.bridges", "MissingApiKey"),
    ("nodes.bridges.prices", "PriceTableError"),
    ("mesh.embedded", "BridgeSetupError"),
    ("nodes.assets", "UnknownModel"),
    ("mesh.embeddings.minilm_assets", "EmbeddingModelMissing"),
)
# Known runtime outcomes that are not MeshErrors: exit 1.
RUNTIME_ERRORS = (("mesh.telemetry.span_store", "TraceNotFound"),)


class CommandFailed(click.ClickException):
    """A failure while running: `mesh: <message>` on stderr, exit 1."""

    exit_code = RUNTIME_EXIT

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"mesh: {one_line(self.format_message())}", file=file or sys.stderr)


class ConfigFailed(CommandFailed):
    """The configuration, the flags or the request must change: `mesh: <message>`, exit 2."""

    exit_code = USAGE_EXIT


def _failure(message: str, exit_code: int) -> CommandFailed:
    return ConfigFailed(message) if exit_code == USAGE_EXIT else CommandFailed(message)


def debug_enabled() -> bool:
    """MESH_DEBUG=1: known failures keep their traceback as well."""
    return os.environ.get("MESH_DEBUG", "") not in ("", "0")


@contextmanager
def error_boundary() -> Iterator[None]:
    """Turn a known failure raised inside into `CommandFailed`; re-raise anything else."""
    try:
        yield
    except (click.UsageError, CommandFailed):
        raise
    except click.ClickException as exc:  # raised by a command: same code, our one-line form
        raise _failure(exc.format_message(), exc.exit_code) from None
    except Exception as exc:
        failure = as_failure(exc)
        if failure is None or debug_enabled():
            raise
        raise failure from None


def as_failure(exc: BaseException) -> CommandFailed | None:
    """The one line and exit code for a known failure; None for anything else (a bug)."""
    if _is_one_of(exc, CONFIG_ERRORS):
        return ConfigFailed(_message_of(exc))
    if isinstance(exc, MeshError):
        details = ErrorDetails(
            code=exc.code.value,
            message=exc.message,
            reason=exc.reason,
            metadata=exc.metadata,
            violations=exc.violations,
            retry_after_s=exc.retry_after_s,
        )
        return status_failure(details)
    grpc = sys.modules.get("grpc")
    if grpc is not None and isinstance(exc, grpc.RpcError):
        from mesh.contract.status import error_details

        return status_failure(error_details(exc))
    if _is_one_of(exc, RUNTIME_ERRORS):
        return CommandFailed(_message_of(exc))
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):  # click handles EPIPE
        return CommandFailed(_os_message(exc))
    return None


def status_failure(details: ErrorDetails) -> CommandFailed:
    """`CODE (REASON): message; field: problem; key=value; retry after Ns` and its exit code."""
    line = f"{details.code} ({details.reason})" if details.reason else details.code
    parts = [f"{line}: {details.message}" if details.message else line]
    parts += [f"{v.field}: {v.description}" for v in details.violations]
    if details.metadata:
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(details.metadata.items())))
    if details.retry_after_s is not None:
        parts.append(f"retry after {details.retry_after_s:.1f}s")
    failure = ConfigFailed if details.code in CALLER_FAULT_CODES else CommandFailed
    return failure("; ".join(parts))


def one_line(text: str) -> str:
    """A message over several lines (a config with three problems) as one line."""
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    if len(parts) < 2:
        return parts[0] if parts else ""
    head, rest = parts[0], "; ".join(parts[1:])
    return f"{head} {rest}" if head.endswith(":") else f"{head}; {rest}"


def _is_one_of(exc: BaseException, names: tuple[tuple[str, str], ...]) -> bool:
    for module_name, class_name in names:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def _message_of(exc: BaseException) -> str:
    # KeyError subclasses (UnknownModel) would print their message quoted through str().
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, str) else str(exc)


def _os_message(exc: OSError) -> str:
    if exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return exc.strerror or _message_of(exc)

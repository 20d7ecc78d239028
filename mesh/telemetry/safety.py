"""Telemetry must never fail a request: every hook runs through `safe_invoke` or `@never_raises`.

A broken exporter, a bad attribute value or a full disk costs a log line (once per call site),
never a status code on the caller's RPC.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

log = logging.getLogger("mesh.telemetry")

_P = ParamSpec("_P")
_R = TypeVar("_R")
_reported: set[str] = set()


def _report(where: str, exc: BaseException) -> None:
    # Once per call site: a hot path that fails on every request must not flood the log.
    if where in _reported:
        log.debug("telemetry hook %s failed again: %r", where, exc)
        return
    _reported.add(where)
    log.warning("telemetry hook %s failed; the request is unaffected", where, exc_info=exc)


def safe_invoke(fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R | None:
    """Call `fn`; on any Exception log it and return None."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        _report(getattr(fn, "__qualname__", repr(fn)), exc)
        return None


def never_raises(fn: Callable[_P, None]) -> Callable[_P, None]:
    """Decorator form of `safe_invoke` for hooks that return nothing."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            _report(fn.__qualname__, exc)

    return wrapper

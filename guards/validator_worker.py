"""The process a guardrails-ai validator runs in (guards.validator_sandbox starts it).

It switches guardrails offline before anything else, builds the validators the router names
(after the router checked the allow-list; checked again here), and answers one call at a time
with plain data, until its connection closes. On Linux it dies with the router, even in the
middle of a catastrophic match. Nothing here runs in the router's process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from guards.errors import UnknownGuard
from guards.verdict import Action, Verdict


def plain_verdict(verdict: Verdict) -> tuple[Any, ...]:
    """A Verdict as plain data for the reply (the router reads it back with no unpickling of
    classes: guards.validator_process.PlainUnpickler)."""
    findings = tuple((f.type, f.start, f.end, f.score) for f in verdict.findings)
    return ("verdict", verdict.action.value, findings, verdict.text)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this worker when the router goes, even mid-match (a catastrophic regex
    would otherwise run on, orphaned, for hours). The signal follows the thread that started
    the worker, its dispatcher, which outlives it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the router went before prctl
        os._exit(1)


def _answer(message: tuple[Any, ...], validators: dict[int, tuple[Any, Action, str]]) -> Any:
    from guards.guardrails_adapter import construct_validator, validate_text

    kind, key, *rest, stale = message
    for old in stale:
        validators.pop(old, None)
    if kind == "build":
        use, params, action, finding_type, patterns = rest
        try:
            validators[key] = (construct_validator(use, params, patterns), action, finding_type)
        except UnknownGuard as exc:
            return ("refused", "use", "UnknownGuard", str(exc))
        except Exception as exc:  # a third-party constructor can raise anything
            base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
            text = str(exc) if base is type(exc) else f"{type(exc).__name__}: {exc}"
            return ("refused", "params", base.__name__, text[:1000])
        return ("built",)
    (text,) = rest
    entry = validators.get(key)
    if entry is None:  # the router builds before it checks; never seen
        return ("raised", "LookupError", "the validator is not built in this worker")
    validator, action, finding_type = entry
    try:
        return plain_verdict(validate_text(validator, text, action, finding_type))
    except Exception as exc:
        return ("raised", type(exc).__qualname__, str(exc)[:1000])


def main(fd: int, parent_pid: int) -> None:
    """The worker's loop: switch guardrails offline, say ready, answer until EOF."""
    _die_with_parent(parent_pid)
    conn = Connection(fd)
    try:
        from guards.guardrails_adapter import offline_guardrails

        offline_guardrails()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    validators: dict[int, tuple[Any, Action, str]] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_answer(message, validators))

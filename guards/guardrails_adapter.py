"""guardrails-ai validators as guards: the one place their pass/fail/fix vocabulary is translated.

guardrails-ai phones home by default (settings.rc.enable_metrics, read from ~/.guardrailsrc) and
its import tries an NLTK download. `offline_guardrails()` switches both off in code, before any
validator is built, whatever the user's rc file says. Setting `settings.rc` once is not enough:
every `Guard()` re-reads the rc file (Guard._load_rc) and, with metrics on, exports spans to
guardrails' hub endpoint (seen here: DNS lookups of *.execute-api.us-east-1.amazonaws.com). So
`RC.load` itself is wrapped to return the file's values with metrics and remote inference off.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from guards.errors import UnknownGuard
from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.verdict import Action, Finding, Verdict

_lock = threading.Lock()
_ready = False


def offline_guardrails() -> None:
    """Import guardrails with telemetry, remote inference and the NLTK download disabled."""
    global _ready
    with _lock:
        if _ready:
            return
        os.environ.setdefault("GUARDRAILS_DISABLE_TRACING", "true")
        nltk = sys.modules.get("nltk")
        if nltk is None:
            try:
                import nltk  # type: ignore[import-not-found, no-redef]
            except ImportError:
                nltk = None
        if nltk is not None:
            nltk.download = lambda *args, **kwargs: False  # type: ignore[attr-defined]
        from guardrails.classes.rc import RC  # type: ignore[import-untyped]
        from guardrails.settings import settings  # type: ignore[import-untyped]

        load_from_file = RC.load

        def load_offline(logger: Any = None) -> Any:
            rc = load_from_file(logger)
            rc.enable_metrics = False
            rc.use_remote_inferencing = False
            return rc

        RC.load = staticmethod(load_offline)
        settings.rc = RC.load()
        settings.disable_tracing = True
        _ready = True


def _span_of_fix(text: str, fixed: str) -> tuple[int, int]:
    """The changed region between a text and its fixed version (common prefix/suffix removed)."""
    start = 0
    limit = min(len(text), len(fixed))
    while start < limit and text[start] == fixed[start]:
        start += 1
    end_t, end_f = len(text), len(fixed)
    while end_t > start and end_f > start and text[end_t - 1] == fixed[end_f - 1]:
        end_t -= 1
        end_f -= 1
    return start, max(end_t, start)


def translate(result: Any, text: str, action: Action, finding_type: str) -> Verdict:
    """guardrails-ai PassResult/FailResult -> Verdict. Fail with error spans -> those spans; fail
    with only a fix value -> the changed region; fail with neither -> the whole text."""
    outcome = getattr(result, "outcome", "pass")
    if outcome == "pass":
        return Verdict.allow()
    findings: list[Finding] = []
    for span in getattr(result, "error_spans", None) or []:
        findings.append(Finding(finding_type, int(span.start), int(span.end)))
    fix = getattr(result, "fix_value", None)
    if not findings and isinstance(fix, str) and fix != text:
        start, end = _span_of_fix(text, fix)
        findings.append(Finding(finding_type, start, end))
    if not findings:
        findings.append(Finding(finding_type, 0, len(text)))
    return Verdict.decide(action, text, findings)


@dataclass
class GuardrailsGuard:
    """A guardrails-ai validator run through its own `validate`; CPU-heavy, so run in a thread."""

    validator: Any
    action: Action
    finding_type: str
    cpu_heavy: bool = True

    def _check(self, text: str) -> Verdict:
        return translate(self.validator.validate(text, {}), text, self.action, self.finding_type)

    def check_input(self, check: InputCheck) -> Verdict:
        return self._check(check.text)

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict:
        return self._check(check.text)

    def check_output_final(self, check: OutputFinalCheck) -> Verdict:
        return self._check(check.text)


def build_guardrails_guard(use: str, params: dict[str, Any], action: Action) -> GuardrailsGuard:
    """`use` is 'package.module:ValidatorClass'; params are the validator's keyword arguments."""
    module_name, _, class_name = use.partition(":")
    offline_guardrails()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownGuard(f"cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UnknownGuard(f"{module_name!r} has no {class_name!r}")
    # on_fail="noop": we decide what a failure does. Remote inference is off in settings.rc,
    # so validators that support it run locally (not every constructor accepts use_local=).
    validator = cls(**params, on_fail="noop")
    return GuardrailsGuard(validator, action, class_name.upper())

"""guardrails-ai validators as guards: the one place their pass/fail/fix vocabulary is translated.

guardrails-ai phones home by default (settings.rc.enable_metrics, read from ~/.guardrailsrc) and
its import tries an NLTK download. `offline_guardrails()` switches both off in code, before any
validator is built, whatever the user's rc file says. Setting `settings.rc` once is not enough:
every `Guard()` re-reads the rc file (Guard._load_rc) and, with metrics on, exports spans to
guardrails' hub endpoint (seen here: DNS lookups of *.execute-api.us-east-1.amazonaws.com). So
`RC.load` itself is wrapped to return the file's values with metrics and remote inference off.

`use: module:Class` loads code named by a policy, so it is fenced: the module must match the
operator's allow-list (`router.guards.validator_modules`, default guardrails_ai.* and
guardrails.hub.*) before it is imported, and the attribute must be a guardrails-ai Validator
subclass before it is called. Measured before the fence: `use: "logging:basicConfig"` in a
policy ApplyPolicy refused still reconfigured the router's logging, and `use: "this:s"`
printed into its output.

Validators run out of process (guards/validator_sandbox.py): the router checks the allow-list
and never imports the module; a worker imports it, checks the class, constructs it, validates,
and translates the result here into a Verdict. In the router's thread a catastrophic regex
once froze the whole event loop for 15.5 s.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guards.errors import UnknownGuard
from guards.hooks import CPU_HEAVY_TIMEOUT_MS, InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.validator_sandbox import SandboxedValidator, ValidatorSpec
from guards.verdict import Action, Finding, Verdict

_lock = threading.Lock()
_ready = False
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def module_allowed(module_name: str, patterns: Sequence[str]) -> bool:
    """Whether a module matches the allow-list: an exact name, or `package.*` for any module
    below `package` (not `package` itself, nor `packagefoo`)."""
    for pattern in patterns:
        if pattern.endswith(".*"):
            if module_name.startswith(pattern[:-1]):
                return True
        elif module_name == pattern:
            return True
    return False


def check_validator_use(use: str, patterns: Sequence[str]) -> tuple[str, str]:
    """Split `package.module:ValidatorClass` and check it against the allow-list, importing
    nothing; UnknownGuard when the form is wrong or the module is not allowed."""
    module_name, _, class_name = use.partition(":")
    if not _MODULE.match(module_name) or not _CLASS.match(class_name):
        raise UnknownGuard(f"{use!r} is not 'package.module:ValidatorClass'")
    if not module_allowed(module_name, patterns):
        allowed = ", ".join(patterns) or "none"
        raise UnknownGuard(
            f"module {module_name!r} is not an allowed validator module (allowed: {allowed}; "
            "the operator sets router.guards.validator_modules); nothing was imported"
        )
    return module_name, class_name


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


def validate_text(validator: Any, text: str, action: Action, finding_type: str) -> Verdict:
    """One validator call and its translation (in a sandbox worker)."""
    return translate(validator.validate(text, {}), text, action, finding_type)


def construct_validator(use: str, params: dict[str, Any], patterns: Sequence[str]) -> Any:
    """Build `use` with `params` (in a sandbox worker, after the router checked `use`). Each
    step before the next runs: the module is allowed (checked again here), imported, the
    attribute is a guardrails-ai Validator subclass (nothing called yet), then constructed."""
    module_name, class_name = check_validator_use(use, patterns)
    offline_guardrails()
    from guardrails.validator_base import Validator  # type: ignore[import-untyped]

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownGuard(f"cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UnknownGuard(f"{module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Validator) and cls is not Validator):
        raise UnknownGuard(f"{use!r} is not a guardrails-ai Validator subclass; not called")
    # on_fail="noop": we decide what a failure does. Remote inference is off in settings.rc,
    # so validators that support it run locally (not every constructor accepts use_local=).
    return cls(**params, on_fail="noop")


@dataclass
class GuardrailsGuard:
    """A guardrails-ai validator run in the validator sandbox, out of the router's process.

    The chain awaits `check_isolated` with the guard's timeout (a worker still on the call
    after it is killed); the synchronous hooks, for callers outside the chain, use the chain's
    default timeout for guards off the event loop."""

    validator: SandboxedValidator
    cpu_heavy: bool = True  # never inline

    async def check_isolated(self, text: str, timeout_s: float) -> Verdict:
        return await self.validator.check(text, timeout_s)

    def _check(self, text: str) -> Verdict:
        return self.validator.check_blocking(text, CPU_HEAVY_TIMEOUT_MS / 1000)

    def check_input(self, check: InputCheck) -> Verdict:
        return self._check(check.text)

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict:
        return self._check(check.text)

    def check_output_final(self, check: OutputFinalCheck) -> Verdict:
        return self._check(check.text)

    def close(self) -> None:
        """Release the validator in the sandbox (a replaced policy's guards)."""
        self.validator.close()


def build_guardrails_guard(
    use: str, params: dict[str, Any], action: Action, patterns: Sequence[str]
) -> GuardrailsGuard:
    """`use` is 'package.module:ValidatorClass' from an allowed module; params are the
    validator's keyword arguments. The allow-list is checked here, importing nothing; the
    rest (import, Validator subclass check, construction) happens in a sandbox worker
    (`construct_validator`) before this returns, so a bad `use` or bad params fail the load:
    UnknownGuard for the `use`, the builtin class of what the constructor raised otherwise."""
    _, class_name = check_validator_use(use, patterns)
    # Nothing here runs a validator, but guardrails used by anything else in the router
    # (guardrails' own Guard API in an embedding program) must be offline too.
    offline_guardrails()
    spec = ValidatorSpec(use, dict(params), action, class_name.upper(), tuple(patterns))
    return GuardrailsGuard(SandboxedValidator.open(spec))

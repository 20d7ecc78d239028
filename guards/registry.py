"""Turns a policy's `use` into a Guard: built-in detectors by name, guardrails-ai by import path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guards.detectors.banned import BannedWordsDetector
from guards.detectors.base import DetectorGuard
from guards.detectors.code_scan import DEFAULT_SKIP
from guards.detectors.content_safety import CATEGORIES, MAX_WINDOWS, ContentSafetyDetector
from guards.detectors.injection import InjectionDetector
from guards.detectors.json_schema import JsonSchemaDetector
from guards.detectors.leakage import SystemPromptLeakageDetector
from guards.detectors.pii import ENTITY_TYPES, PiiDetector
from guards.detectors.secrets import SECRET_TYPES, SecretsDetector
from guards.detectors.token_limit import TokenLimitDetector
from guards.errors import UnknownGuard
from guards.hooks import Guard
from guards.verdict import Action


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PiiParams(_Params):
    entities: list[str] = Field(default_factory=lambda: list(ENTITY_TYPES))


class SecretsParams(_Params):
    types: list[str] = Field(default_factory=lambda: list(SECRET_TYPES))


class InjectionParams(_Params):
    threshold: float = Field(0.5, gt=0, lt=1)
    classifier: bool = True
    rules: bool = True


class BannedWordsParams(_Params):
    words: list[str] = Field(..., min_length=1)
    threshold: float = Field(88.0, ge=50, le=100)


class TokenLimitParams(_Params):
    max_tokens: int = Field(..., ge=1)


_REFERENCE_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _local_references_only(value: Any) -> None:
    """ValueError for a reference outside the schema: python-jsonschema fetched such a URL while
    validating a response (seen here: an HTTP request to the $ref's host), so a policy could
    make the router call any address it names. The detector's validator refuses to retrieve
    any URI as well (guards/detectors/json_schema.py); this names the field at load."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key in _REFERENCE_KEYS and isinstance(item, str) and not item.startswith("#"):
                    raise ValueError(
                        f"{key} {item[:100]!r} points outside the schema; only local "
                        "references ('#/...') are allowed: the router never fetches a schema"
                    )
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)


class JsonSchemaParams(_Params):
    # "schema" shadows a BaseModel attribute, hence the alias.
    json_schema: dict[str, Any] = Field(..., alias="schema")

    @field_validator("json_schema")
    @classmethod
    def _no_remote_references(cls, value: dict[str, Any]) -> dict[str, Any]:
        _local_references_only(value)
        return value


class LeakageParams(_Params):
    ngram_words: int = Field(8, ge=3, le=64)


class PresidioParams(_Params):
    entities: list[str] = Field(default_factory=lambda: ["PERSON", "LOCATION", "NRP"])
    score_threshold: float = Field(0.5, ge=0, le=1)


class CodeScanParams(_Params):
    min_severity: Literal["low", "medium", "high"] = "low"
    # Bandit test ids not reported (default: its noisiest for snippets, see code_scan.py).
    skip: list[str] = Field(default_factory=lambda: list(DEFAULT_SKIP))
    licenses: bool = True
    bandit: bool = True
    max_block_chars: int = Field(20_000, ge=100, le=1_000_000)


class ContentSafetyParams(_Params):
    model: Literal["minilm", "ngram"] = "minilm"
    threshold: float | None = Field(None, gt=0, lt=1)  # None: the shipped, trained one
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    stream_hold: Literal["all", "window"] = "all"
    max_windows: int = Field(MAX_WINDOWS, ge=1, le=256)


def _pii(p: dict[str, Any], action: Action) -> Guard:
    return DetectorGuard(PiiDetector(PiiParams.model_validate(p).entities), action)


def _secrets(p: dict[str, Any], action: Action) -> Guard:
    return DetectorGuard(SecretsDetector(SecretsParams.model_validate(p).types), action)


def _injection(p: dict[str, Any], action: Action) -> Guard:
    q = InjectionParams.model_validate(p)
    return DetectorGuard(InjectionDetector(q.threshold, q.classifier, q.rules), action)


def _banned(p: dict[str, Any], action: Action) -> Guard:
    q = BannedWordsParams.model_validate(p)
    return DetectorGuard(BannedWordsDetector(q.words, q.threshold), action)


def _token_limit(p: dict[str, Any], action: Action) -> Guard:
    return DetectorGuard(TokenLimitDetector(TokenLimitParams.model_validate(p).max_tokens), action)


def _json_schema(p: dict[str, Any], action: Action) -> Guard:
    return DetectorGuard(JsonSchemaDetector(JsonSchemaParams.model_validate(p).json_schema), action)


def _leakage(p: dict[str, Any], action: Action) -> Guard:
    return DetectorGuard(
        SystemPromptLeakageDetector(LeakageParams.model_validate(p).ngram_words), action
    )


def _presidio(p: dict[str, Any], action: Action) -> Guard:
    # Imported here: the `presidio` extra is optional and loading it takes about a second.
    from guards.detectors.presidio import PresidioDetector

    q = PresidioParams.model_validate(p)
    return DetectorGuard(PresidioDetector(q.entities, q.score_threshold), action, cpu_heavy=True)


def _code_scan(p: dict[str, Any], action: Action) -> Guard:
    from guards.detectors.code_scan import CodeScanDetector  # Bandit loads only when built

    q = CodeScanParams.model_validate(p)
    detector = CodeScanDetector(q.min_severity, q.skip, q.licenses, q.bandit, q.max_block_chars)
    return DetectorGuard(detector, action, cpu_heavy=True)


def _content_safety(p: dict[str, Any], action: Action) -> Guard:
    q = ContentSafetyParams.model_validate(p)
    detector = ContentSafetyDetector(
        q.threshold, q.categories, q.stream_hold, q.model, q.max_windows
    )
    # MiniLM runs take milliseconds: in a thread, like Presidio, never on the event loop.
    return DetectorGuard(detector, action, cpu_heavy=q.model == "minilm")


BUILT_INS: dict[str, Callable[[dict[str, Any], Action], Guard]] = {
    "pii": _pii,
    "secrets": _secrets,
    "prompt_injection": _injection,
    "banned_words": _banned,
    "token_limit": _token_limit,
    "json_schema": _json_schema,
    "system_prompt_leakage": _leakage,
    "presidio": _presidio,  # the optional `presidio` extra
    "content_safety": _content_safety,
    "code_scan": _code_scan,
}


def check_use(use: str, validator_modules: Sequence[str]) -> None:
    """UnknownGuard unless `use` names a built-in or an allow-listed `module:Class`; imports
    nothing, so a policy can be refused before any of its code runs."""
    if ":" in use:
        from guards.guardrails_adapter import check_validator_use  # imports no guardrails

        check_validator_use(use, validator_modules)
    elif use not in BUILT_INS:
        raise UnknownGuard(
            f"unknown guard {use!r}; built-ins: {sorted(BUILT_INS)}, or 'module:Class'"
        )


def build_guard(
    use: str, params: dict[str, Any], action: Action, validator_modules: Sequence[str] = ()
) -> Guard:
    """Build one guard; raises ValueError (or pydantic's ValidationError) on bad `use`/params.

    `validator_modules`: where a `module:Class` may come from (router.guards.validator_modules);
    empty: no guardrails-ai validator at all."""
    check_use(use, validator_modules)
    if ":" in use:
        from guards.guardrails_adapter import build_guardrails_guard  # slow import, only if used

        return build_guardrails_guard(use, params, action, validator_modules)
    return BUILT_INS[use](params, action)

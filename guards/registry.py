"""Turns a policy's `use` into a Guard: built-in detectors by name, guardrails-ai by import path."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from guards.detectors.banned import (
    INLINE_MAX_PHRASES,
    MAX_PHRASE_CHARS,
    MAX_PHRASE_WORDS,
    MAX_PHRASES,
    MAX_TOTAL_CHARS,
    BannedWordsDetector,
    normalise,
)
from guards.detectors.base import DetectorGuard
from guards.detectors.code_scan import DEFAULT_SKIP
from guards.detectors.content_safety_settings import CATEGORIES, MAX_WINDOWS
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
    """A built-in guard's `params`, as hostile as the rest of the policy: no unknown key, no
    NaN or infinity (`.nan` compares false with every bound and threshold), and no coercion:
    YAML's `yes` is not the number 1, nor `"0.7"` a float, nor 8.0 an integer."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _known(values: list[str], known: Collection[str], what: str) -> list[str]:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what}: {unknown}; known: {list(known)}")
    return values


class PiiParams(_Params):
    # At most one of each: a longer list can only repeat one.
    entities: list[str] = Field(
        default_factory=lambda: list(ENTITY_TYPES), min_length=1, max_length=len(ENTITY_TYPES)
    )

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: list[str]) -> list[str]:
        return _known(value, ENTITY_TYPES, "PII entities")


class SecretsParams(_Params):
    types: list[str] = Field(
        default_factory=lambda: list(SECRET_TYPES), min_length=1, max_length=len(SECRET_TYPES)
    )

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        return _known(value, SECRET_TYPES, "secret types")


class InjectionParams(_Params):
    threshold: float = Field(0.5, gt=0, lt=1)
    classifier: bool = True
    rules: bool = True
    # A MiniLM opinion beside the n-gram model (injection_semantic.py): `true` / "minilm" in
    # its grey zone, "tuned" (fine-tuned layers) deciding with it past a low gate.
    semantic: bool | Literal["minilm", "tuned"] = False

    @model_validator(mode="after")
    def _semantic_needs_classifier(self) -> InjectionParams:
        if self.semantic and not self.classifier:
            raise ValueError("semantic needs classifier: true (its gate is the n-gram score)")
        return self


def _banned_phrase(phrase: str) -> str:
    """A phrase as short as matching needs (see guards.detectors.banned), measured as it is
    matched: lower-cased, look-alikes undone, whitespace single."""
    matched = normalise(phrase)
    if not matched:
        raise ValueError("a blank phrase matches nothing")
    if len(matched) > MAX_PHRASE_CHARS:
        raise ValueError(
            f"{len(matched):,} characters; a phrase has at most {MAX_PHRASE_CHARS} characters"
        )
    if matched.count(" ") + 1 > MAX_PHRASE_WORDS:
        raise ValueError(
            f"{matched.count(' ') + 1} words; a phrase has at most {MAX_PHRASE_WORDS} words"
        )
    return phrase


class BannedWordsParams(_Params):
    # Each request compares each phrase with each window of its text of similar length: these
    # bounds keep the worst list on the worst 32k-token text under a second (banned.py).
    words: list[Annotated[str, AfterValidator(_banned_phrase)]] = Field(
        ..., min_length=1, max_length=MAX_PHRASES
    )
    threshold: float = Field(88.0, ge=50, le=100)

    @field_validator("words")
    @classmethod
    def _total_length(cls, value: list[str]) -> list[str]:
        total = sum(len(normalise(phrase)) for phrase in value)
        if total > MAX_TOTAL_CHARS:
            raise ValueError(
                f"{total:,} characters in all phrases; at most {MAX_TOTAL_CHARS:,} in all"
            )
        return value


class TokenLimitParams(_Params):
    # Past any model's context window: a larger limit would be no limit, and surely a typo.
    max_tokens: int = Field(..., ge=1, le=10_000_000)


_REFERENCE_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


# A response schema's nodes (mappings, lists, keys and values, as YAML counts them). Validation
# can cost the schema times the answer: a `oneOf` of 20,000 `const`s (60,000 nodes) held the
# event loop 0.67 s on each 8 KB answer and took 8.4 s on a 128 KB one; at this bound (a
# `oneOf` of 1,666) the same 8 KB answer takes ~25 ms. Real response schemas are a few hundred.
MAX_SCHEMA_NODES = 5_000


def _check_schema(value: Any) -> None:
    """ValueError for a schema past MAX_SCHEMA_NODES, or with a reference outside itself:
    python-jsonschema fetched such a URL while validating a response (seen here: an HTTP
    request to the $ref's host), so a policy could make the router call any address it names.
    The detector's validator refuses to retrieve any URI as well
    (guards/detectors/json_schema.py); this names the field at load."""
    stack = [value]
    nodes = 0
    while stack:
        node = stack.pop()
        nodes += 1
        if isinstance(node, dict):
            nodes += len(node)
            for key, item in node.items():
                if key in _REFERENCE_KEYS and isinstance(item, str) and not item.startswith("#"):
                    raise ValueError(
                        f"{key} {item[:100]!r} points outside the schema; only local "
                        "references ('#/...') are allowed: the router never fetches a schema"
                    )
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)
        if nodes > MAX_SCHEMA_NODES:
            raise ValueError(f"more than {MAX_SCHEMA_NODES:,} nodes in the schema")


class JsonSchemaParams(_Params):
    # "schema" shadows a BaseModel attribute, hence the alias.
    json_schema: dict[str, Any] = Field(..., alias="schema")

    @field_validator("json_schema")
    @classmethod
    def _bounded_and_local(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_schema(value)
        return value


class LeakageParams(_Params):
    # Up to 64: each cached prompt index (16 kept) holds a tuple of n words per prompt word,
    # 16 MiB for a 24,000-word prompt at 64 (6 MiB at 8); a 64-word run is a leak already.
    ngram_words: int = Field(8, ge=3, le=64)


# Presidio's names are checked against its recognizers when the guard is built (that needs the
# analyzer); these bounds only keep the list a list of names.
PresidioEntity = Annotated[str, Field(min_length=1, max_length=64)]


class PresidioParams(_Params):
    entities: list[PresidioEntity] = Field(
        default_factory=lambda: ["PERSON", "LOCATION", "NRP"], min_length=1, max_length=64
    )
    score_threshold: float = Field(0.5, ge=0, le=1)


# A Bandit test id: B and three digits (B101 ... B704); anything else would skip nothing.
BanditTestId = Annotated[str, Field(pattern=r"^B[0-9]{3}$")]


class CodeScanParams(_Params):
    min_severity: Literal["low", "medium", "high"] = "low"
    # Bandit test ids not reported (default: its noisiest for snippets, see code_scan.py).
    skip: list[BanditTestId] = Field(default_factory=lambda: list(DEFAULT_SKIP), max_length=256)
    licenses: bool = True
    bandit: bool = True
    # Bandit takes ~2.5 µs a character here: 100,000 is 0.25 s, one block of 1,000,000 took
    # 2.5 s, past the guard's 2 s deadline and holding the GIL and the scan lock meanwhile.
    max_block_chars: int = Field(20_000, ge=100, le=100_000)


class ContentSafetyParams(_Params):
    model: Literal["minilm", "tuned", "ngram"] = "minilm"
    threshold: float | None = Field(None, gt=0, lt=1)  # None: the shipped, trained one
    categories: list[str] = Field(
        default_factory=lambda: list(CATEGORIES), min_length=1, max_length=len(CATEGORIES)
    )
    stream_hold: Literal["all", "window"] = "all"
    max_windows: int = Field(MAX_WINDOWS, ge=1, le=256)
    # minilm only: windows a static model scores clearly harmless never reach MiniLM
    static_first: bool = True

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: list[str]) -> list[str]:
        return _known(value, CATEGORIES, "categories")


def _pii(p: dict[str, Any], action: Action) -> Guard:
    return DetectorGuard(PiiDetector(PiiParams.model_validate(p).entities), action)


def _secrets(p: dict[str, Any], action: Action) -> Guard:
    return DetectorGuard(SecretsDetector(SecretsParams.model_validate(p).types), action)


def _injection(p: dict[str, Any], action: Action) -> Guard:
    q = InjectionParams.model_validate(p)
    if q.semantic:
        from guards.detectors.injection_semantic import (
            TUNED_ENCODER_PATH,
            TUNED_ENCODER_SHA256,
            TUNED_MODEL_PATH,
            TUNED_MODEL_SHA256,
            SemanticInjectionDetector,
            SemanticInjectionGuard,
        )

        if q.semantic == "tuned":
            detector = SemanticInjectionDetector(
                q.threshold,
                q.classifier,
                q.rules,
                model_path=TUNED_MODEL_PATH,
                model_sha256=TUNED_MODEL_SHA256,
                encoder_path=TUNED_ENCODER_PATH,
                encoder_sha256=TUNED_ENCODER_SHA256,
            )
        else:
            detector = SemanticInjectionDetector(q.threshold, q.classifier, q.rules)
        # Off the event loop: a prompt in the grey zone takes one or two MiniLM runs (2-20
        # ms), which would stall every other call on the loop; the hop costs ~0.1 ms.
        return SemanticInjectionGuard(detector, action, cpu_heavy=True)
    return DetectorGuard(InjectionDetector(q.threshold, q.classifier, q.rules), action)


def _banned(p: dict[str, Any], action: Action) -> Guard:
    q = BannedWordsParams.model_validate(p)
    detector = BannedWordsDetector(q.words, q.threshold)
    # A long list is matched in a thread: rapidfuzz releases the GIL, the event loop runs on.
    return DetectorGuard(detector, action, cpu_heavy=detector.phrase_count > INLINE_MAX_PHRASES)


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
    from guards.detectors.content_safety import ContentSafetyDetector  # numpy: only when used

    q = ContentSafetyParams.model_validate(p)
    detector = ContentSafetyDetector(
        q.threshold, q.categories, q.stream_hold, q.model, q.max_windows, q.static_first
    )
    # MiniLM runs take milliseconds: in a thread, like Presidio, never on the event loop.
    return DetectorGuard(detector, action, cpu_heavy=q.model != "ngram")


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

"""The policy document a security team writes (YAML), as pydantic models with extra=forbid."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guards.detectors.banned import MAX_PHRASES, MAX_TOTAL_CHARS, normalise
from guards.verdict import Action, Mode, Stage

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")
# Guards one request runs (a tenant's whole list): each runs on every request, so the list's
# length multiplies every guard's cost. 19,000 `secrets` guards (a 600 KB policy, within the
# loader's bounds) took 0.5 s of the event loop on a 1 KB prompt; the shipped policies have 8.
MAX_GUARDS = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuardSpec(_Strict):
    """One guard: which detector (`use`), where it runs, what it does with findings."""

    name: str = Field(..., min_length=1, max_length=64, pattern=NAME.pattern)
    use: str = Field(
        ...,
        min_length=1,
        max_length=200,  # it is quoted back in errors and logs
        description="built-in name, or 'module.path:ClassName' of a guardrails-ai validator",
    )
    stage: Literal["input", "output", "both"] = "input"
    params: dict[str, Any] = Field(default_factory=dict)
    action: Literal["block", "redact", "flag"] = "block"
    mode: Literal["enforce", "monitor"] = "enforce"
    on_error: Literal["open", "closed"] = Field(
        "open",
        description="when the guard fails or times out: open passes the text, flagged with a "
        "GUARD_ERROR finding (verdict and audit log); closed blocks it",
    )
    timeout_ms: int | None = Field(
        None,
        ge=1,
        le=60_000,
        description="deadline of one call; unset: 200 ms for inline guards, 2000 ms for those "
        "that run in a thread (Presidio, content_safety's MiniLM, code_scan, banned_words with "
        "over 200 phrases, guardrails-ai validators), whose 200 ms let CPU contention turn "
        "verdicts into on_error passes",
    )
    roles: list[Role] = Field(
        default_factory=lambda: list(ROLES),
        min_length=1,
        description="input stage: the conversation turns this guard reads (default: every turn, "
        "so a secret in a system prompt is redacted before any provider sees it)",
    )

    @property
    def stages(self) -> tuple[Stage, ...]:
        if self.stage == "both":
            return (Stage.INPUT, Stage.OUTPUT)
        return (Stage(self.stage),)

    @property
    def action_enum(self) -> Action:
        return Action(self.action)

    @property
    def mode_enum(self) -> Mode:
        return Mode(self.mode)


class StreamSettings(_Strict):
    """Streaming output. Each built-in guard holds back only what it could still turn into a
    finding (guards/streaming.py); `hold_back_chars` is what a guard that cannot say holds (a
    guardrails-ai validator, Presidio, the injection classifier on output)."""

    hold_back_chars: int = Field(64, ge=0, le=65_536)


class TenantOverride(_Strict):
    """Per-tenant changes to the base guard list, applied in order: disable, replace, add."""

    disable: list[str] = Field(default_factory=list)
    replace: list[GuardSpec] = Field(default_factory=list, max_length=MAX_GUARDS)
    add: list[GuardSpec] = Field(default_factory=list, max_length=MAX_GUARDS)


class Policy(_Strict):
    """A whole guard policy. Its version is a hash of its content, not a number someone bumps."""

    guards: list[GuardSpec] = Field(default_factory=list, max_length=MAX_GUARDS)
    stream: StreamSettings = Field(default_factory=lambda: StreamSettings.model_validate({}))
    parallel_input: bool = Field(
        False,
        description="let generation start while input guards run; no token leaves before they pass",
    )
    store_content: bool = Field(False, description="store raw checked text in the audit log")
    tenants: dict[str, TenantOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_unique(self) -> Policy:
        seen: set[str] = set()
        for spec in self.guards:
            if spec.name in seen:
                raise ValueError(f"duplicate guard name {spec.name!r}")
            seen.add(spec.name)
        for tenant, override in self.tenants.items():
            names = set(seen)
            for name in override.disable:
                if name not in names:
                    raise ValueError(f"tenant {tenant!r} disables unknown guard {name!r}")
            for spec in override.replace:
                if spec.name not in names:
                    raise ValueError(f"tenant {tenant!r} replaces unknown guard {spec.name!r}")
            for spec in override.add:
                if spec.name in names:
                    raise ValueError(
                        f"tenant {tenant!r} adds guard {spec.name!r} that already exists"
                    )
                names.add(spec.name)
            running = len(self.guards_for(tenant))
            if running > MAX_GUARDS:
                raise ValueError(f"tenant {tenant!r} runs {running} guards; at most {MAX_GUARDS}")
        sizes: dict[int, tuple[int, int]] = {}  # each list measured once, however many tenants
        for tenant in ["", *self.tenants]:
            _banned_words_within_budget(self.guards_for(tenant), tenant, sizes)
        return self

    def version(self) -> str:
        """sha256 of the canonical JSON of the validated document, first 16 hex digits."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def guards_for(self, tenant: str) -> list[GuardSpec]:
        """The effective guard list for a tenant (the base list when it has no override)."""
        override = self.tenants.get(tenant)
        if override is None:
            return list(self.guards)
        replaced = {spec.name: spec for spec in override.replace}
        disabled = set(override.disable)
        effective = [replaced.get(s.name, s) for s in self.guards if s.name not in disabled]
        return effective + list(override.add)


def _banned_words_within_budget(
    specs: list[GuardSpec], tenant: str, sizes: dict[int, tuple[int, int]]
) -> None:
    """ValueError when the banned_words guards one request runs list more phrases, or more
    characters, in all than one guard may (guards.registry.BannedWordsParams): each request
    matches every list, so a list split over guards costs what the bound on one list forbids
    (38 guards of 2,000 phrases, a 1 MiB policy, took 27 s of CPU on a 32k-token request).

    A list past the bound on its own is left to its guard's params, which name its line.
    `sizes`: id(spec) -> (phrases, characters), filled as lists are measured."""
    for spec in specs:
        words = spec.params.get("words") if spec.use == "banned_words" else None
        if isinstance(words, list) and id(spec) not in sizes:
            matched = [normalise(w) for w in words if isinstance(w, str)]
            sizes[id(spec)] = (len(matched), sum(map(len, matched)))
    lists = {spec.name: sizes[id(spec)] for spec in specs if id(spec) in sizes}
    if len(lists) < 2 or any(p > MAX_PHRASES or c > MAX_TOTAL_CHARS for p, c in lists.values()):
        return
    runs = f" (tenant {tenant!r})" if tenant else ""
    for at, most, what in ((0, MAX_PHRASES, "phrases"), (1, MAX_TOTAL_CHARS, "characters")):
        total = sum(size[at] for size in lists.values())
        if total > most:
            raise ValueError(
                f"banned_words guards {sorted(lists)}{runs} list {total:,} {what} in all, and "
                f"a request runs every one; at most {most:,} {what} in all"
            )

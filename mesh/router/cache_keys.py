"""What a cached answer is keyed and scoped by, what is stored, and what a hit carries.

A key covers the tenant, the guard-policy version (an answer never outlives the policy that
admitted it), what the answer was routed to, and the sampling parameters; the exact part hashes
every message, so it is multi-turn safe by construction. The semantic parts (the last user turn,
the context before it, the numbers in the text) are derived on first use, so an exact hit pays
for hashing alone.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesh.v1 import types_pb2

if TYPE_CHECKING:
    from mesh.embeddings.batching import Vector
    from mesh.router.question_form import QuestionForm


class Outcome(enum.Enum):
    """How a response ended; only COMPLETE is ever stored."""

    COMPLETE = "complete"
    BLOCKED = "blocked"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class CacheScope:
    """Everything besides the conversation that must match for a cached answer to apply."""

    tenant: str
    policy_version: str
    target: str  # the pinned model, or the tier the request was routed to ("tier:small")
    sampling: str  # normalised sampling parameters

    @classmethod
    def build(
        cls,
        tenant: str,
        policy_version: str,
        target: str,
        sampling: types_pb2.SamplingParams | None = None,
    ) -> CacheScope:
        return cls(tenant, policy_version, target, sampling_key(sampling))

    @property
    def key(self) -> str:
        return "\x1f".join((self.tenant, self.policy_version, self.target, self.sampling))


def sampling_key(sampling: types_pb2.SamplingParams | None) -> str:
    """Sampling parameters as a canonical string (unset fields stay distinct from zero)."""
    if sampling is None:
        return ""
    parts = []
    for name in ("temperature", "top_p", "top_k", "max_tokens", "seed"):
        if sampling.HasField(name):
            parts.append(f"{name}={getattr(sampling, name)!r}")
    if sampling.stop:
        parts.append("stop=" + "\x1e".join(sampling.stop))
    return ",".join(parts)


@dataclass
class CacheKey:
    """The lookup key of one request; carries embeddings so `put` need not recompute them.

    Only the exact hash is computed up front; the semantic parts are derived on first use, so
    an exact hit pays for hashing alone.
    """

    scope: CacheScope
    exact: str
    turns: int
    semantic_ok: bool
    norm: list[tuple[int, str]]
    vectors: tuple[Vector, Vector] | None = None
    # Set once the tier is estimated: a paraphrase may only reuse an answer routed to the same
    # tier (or pinned model). The exact tier needs no such field: the same conversation under
    # the same policy and hints is always estimated the same.
    semantic_target: str = ""
    # Semantic candidates the verifier turned down for this request, and the first reason
    # (categories only, no prompt words): for the route span when the lookup misses.
    vetoed: int = 0
    veto: str = ""

    @functools.cached_property
    def _last_user(self) -> int:
        return max(
            (i for i, (r, _) in enumerate(self.norm) if r == types_pb2.ROLE_USER),
            default=len(self.norm) - 1,
        )

    @functools.cached_property
    def task(self) -> str:
        """The last user turn, normalised."""
        return self.norm[self._last_user][1] if self.norm else ""

    @functools.cached_property
    def context(self) -> str:
        """The turns before it, normalised and role-tagged."""
        return "\n".join(f"{r}: {c}" for r, c in self.norm[: self._last_user])

    @functools.cached_property
    def forms(self) -> tuple[QuestionForm, ...]:
        """Every message reduced to the words that decide its answer (question_form.py): tens
        of microseconds each, so computed in the lookup thread, never on the event loop. Only
        the semantic tier reads them: an exact-only cache never imports their lexicons
        (1.5 MB of a lean router's idle RSS)."""
        from mesh.router.question_form import question_form

        return tuple(question_form(c) for _, c in self.norm)

    @property
    def has_forms(self) -> bool:
        return "forms" in self.__dict__

    @functools.cached_property
    def fingerprint(self) -> str:
        """Roles, and the numbers of the conversation as digits ("seven", "VII" and "7" alike):
        both must match for a semantic hit."""
        roles = "".join(str(r) for r, _ in self.norm)
        return roles + ":" + ",".join(sorted(n for f in self.forms for n in f.numbers))


@dataclass(frozen=True)
class CacheHit:
    """A stored answer ready for replay."""

    text: str
    usage: types_pb2.Usage
    model: str
    node_id: str
    finish_reason: int
    kind: str  # "exact" or "semantic"
    similarity: float
    age_s: float
    tier: int = 0  # the tier of the model that generated it (types_pb2.ModelTier)
    # How a semantic hit was checked to ask the same question ("verified: ..."; "exact" for
    # the exact tier), and how many nearer candidates were vetoed before it.
    verification: str = ""
    vetoed: int = 0

    @property
    def saved_cost_usd(self) -> float:
        """What the answer cost when it was generated: the saving this hit records."""
        return self.usage.cost_usd


@dataclass
class CacheEntry:
    """One stored answer (ResponseCache's own record; slot -1 until indexed)."""

    scope: str
    exact: str
    text: str
    usage: types_pb2.Usage
    model: str
    node_id: str
    finish_reason: int
    stored_at: float
    slot: int = -1
    tier: int = 0
    forms: tuple[QuestionForm, ...] = ()
    form_key: str = ""


@dataclass
class CacheStats:
    """Counters the router's metrics read."""

    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    stores: int = 0
    refused: int = 0
    evictions: int = 0
    vetoes: int = 0  # semantic candidates the verifier turned down

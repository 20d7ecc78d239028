"""Response cache: an exact tier (normalised conversation hash), then a semantic tier.

Both tiers are scoped: a key covers the tenant, the guard-policy version (so an answer never
outlives the policy that admitted it), the model or tier the answer was routed to, and the
sampling parameters. The exact key hashes every message, so it is multi-turn safe by
construction. The semantic tier compares the last user turn and, separately, the context before
it, and also demands the same roles and the same numbers in the text: MiniLM scores "what is
2+3" and "what is 2+4" as near-identical. Similarity only proposes candidates: MiniLM also puts
"Is it safe" / "Is it unsafe" and "Is Python faster than Java?" / the reverse at 0.99, so each
candidate is verified word by word (cache_verify.py) before it is served, and a prompt whose
words reduce to the same canonical form (question_form.py: case, contractions, greetings,
"could you please", numerals) is found by hash even where the cosine is low. Conversations
longer than MiniLM can see (256 tokens) use only the exact tier.

Only complete answers are stored; `put` takes an explicit outcome so blocked, failed and
truncated-by-abort responses cannot slip in. The vector index is a preallocated numpy matrix,
one brute-force matrix-vector product per lookup (cache_index.py), with LRU eviction; it and
the verifier are imported only when the semantic tier is on.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mesh.config import CacheSettings
from mesh.embeddings.text import embedding_text, normalise
from mesh.router.cache_keys import (
    CacheEntry,
    CacheHit,
    CacheKey,
    CacheScope,
    CacheStats,
    Outcome,
    sampling_key,
)
from mesh.v1 import types_pb2

if TYPE_CHECKING:
    from mesh.embeddings.batching import Embedder, Vector
    from mesh.router.cache_index import VectorIndex
    from mesh.router.cache_verify import QuestionVerifier

# The key and hit types live in cache_keys.py; they are part of this module's API too.
__all__ = [
    "CacheHit",
    "CacheKey",
    "CacheScope",
    "Outcome",
    "ResponseCache",
    "sampling_key",
]
Clock = Callable[[], float]
# Nearest candidates verified per lookup: the verifier is precise, so a paraphrase is normally
# the first or second; a long tail of near-misses is not worth the lock time.
MAX_VERIFIED_CANDIDATES = 8
# Canonical words cost ~1 us a character (question_form.py; 44 us at 100 characters, 2.3 ms at
# 2000) and a thread hop ~140 us (measured on the 2-core machine): a short prompt is reduced
# inline when its answer is stored, so the write lands before the next request, as it did
# before verification existed; a long one is reduced in a thread.
INLINE_FORM_CHARS = 200
# A lookup's vector product costs 0.03 ms at 2,000 rows and 0.30 ms at 10,000 (the default
# max_entries), each verified candidate ~33 us; a thread hop saves the event loop that CPU but
# costs two GIL handoffs, which under load is the larger bill: at 32 concurrent requests the
# default router served 213 rps with every lookup in a thread and 240-247 rps with lookups
# inline (same machine, alternating runs, 2026-12-06). So a lookup runs inline while the index
# and the prompt are small enough, in a thread past that.
INLINE_SEARCH_ROWS = 10_000
VERIFIED_SAME_FORM = "verified: same words after normalising"


class ResponseCache:
    """Thread-safe exact + semantic cache; `aget`/`aput` keep embedding off the event loop."""

    def __init__(
        self,
        settings: CacheSettings | None = None,
        embedder: Embedder | None = None,
        clock: Clock = time.monotonic,
        verifier: QuestionVerifier | None = None,
    ) -> None:
        self.settings = settings or CacheSettings()
        self._embedder = embedder if self.settings.semantic else None
        self._verifier: QuestionVerifier | None = None
        # The semantic tier's parts (numpy, rapidfuzz, word lists) load only when it is on: an
        # exact-only cache keys and serves without them.
        self._index: VectorIndex | None = None
        if self._embedder is not None:
            from mesh.router.cache_index import VectorIndex

            self._index = VectorIndex(self.settings.max_entries, self._embedder.dim)
            if self.settings.verify:
                from mesh.router.cache_verify import QuestionVerifier, minilm_vocabulary

                self._verifier = verifier or QuestionVerifier(minilm_vocabulary())
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()  # LRU order
        self._by_exact: dict[str, int] = {}
        self._by_form: dict[str, int] = {}  # scope + canonical words -> entry (verified tier)
        self._next_id = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def threshold(self) -> float:
        """The cosine in effect: a candidate's floor when verifying, a hit's when not."""
        s = self.settings
        return s.candidate_threshold if self._verifier is not None else s.similarity_threshold

    # -- keys ------------------------------------------------------------------------------
    def key(self, scope: CacheScope, messages: Sequence[types_pb2.ChatMessage]) -> CacheKey:
        """Build the key (cheap: hashing only; embeddings are computed on first need)."""
        norm = [(int(m.role), normalise(m.content)) for m in messages]
        convo = "\x1e".join(f"{r}\x1f{c}" for r, c in norm)
        exact = hashlib.blake2b(f"{scope.key}\x1d{convo}".encode(), digest_size=16).hexdigest()
        return CacheKey(
            scope=scope,
            exact=exact,
            turns=len(norm),
            semantic_ok=self._embedder is not None
            and sum(len(c) for _, c in norm) <= self.settings.max_semantic_chars,
            norm=norm,
        )

    @staticmethod
    def _texts(key: CacheKey) -> list[str]:
        # The task text is the tier estimator's too: the embedder's memo answers the second ask.
        task = embedding_text(key.task)
        return [task, key.context] if key.context else [task]

    @staticmethod
    def _pair(rows: Vector) -> tuple[Vector, Vector]:
        return (rows[0], rows[1]) if len(rows) > 1 else (rows[0], rows[0] * 0.0)

    def _vectors(self, key: CacheKey) -> tuple[Vector, Vector]:
        if key.vectors is None:
            assert self._embedder is not None
            key.vectors = self._pair(self._embedder.embed(self._texts(key)))
        return key.vectors

    async def _avectors(self, key: CacheKey) -> tuple[Vector, Vector]:
        if key.vectors is None:
            assert self._embedder is not None
            from mesh.embeddings.batching import aembed

            key.vectors = self._pair(await aembed(self._embedder, self._texts(key)))
        return key.vectors

    @staticmethod
    def _reduced_inline(key: CacheKey) -> bool:
        """Whether the key's canonical words are known or cheap enough to compute inline."""
        return key.has_forms or sum(len(c) for _, c in key.norm) <= INLINE_FORM_CHARS

    def _form_key(self, key: CacheKey) -> str:
        """Scope and canonical words of every message; "" when the task reduces to nothing."""
        if self._verifier is None or not key.forms or not key.forms[-1].tokens:
            return ""
        words = "\x1e".join(f.key for f in key.forms)
        return f"{self._semantic_scope(key)}\x1d{words}"

    def _semantic_scope(self, key: CacheKey) -> int:
        digest = hashlib.blake2b(
            f"{key.scope.key}\x1d{key.semantic_target}\x1d{key.turns}\x1d{key.fingerprint}".encode(),
            digest_size=8,
        ).digest()
        return int.from_bytes(digest, signed=True)

    # -- lookup ----------------------------------------------------------------------------
    def get_exact(self, key: CacheKey) -> CacheHit | None:
        """Exact tier only (microseconds; safe to call on the event loop)."""
        with self._lock:
            entry_id = self._by_exact.get(key.exact)
            if entry_id is None:
                return None
            entry = self._entries[entry_id]
            if self._expired(entry):
                self._remove(entry_id)
                return None
            self._entries.move_to_end(entry_id)
            self.stats.exact_hits += 1
            return self._hit(entry, "exact", 1.0, "exact")

    def get(self, key: CacheKey) -> CacheHit | None:
        """Exact tier, then semantic tier (embeds: call from a thread, or use `aget`)."""
        hit = self.get_exact(key)
        if hit is not None:
            return hit
        if key.semantic_ok:
            hit = self._get_semantic(key, self._vectors(key))
        if hit is None:
            self.stats.misses += 1
        return hit

    async def aget(self, key: CacheKey) -> CacheHit | None:
        """`get` with the exact tier inline; embedding and vector search off the event loop."""
        return self.get_exact(key) or await self.aget_semantic(key)

    async def aget_semantic(self, key: CacheKey) -> CacheHit | None:
        """The semantic tier alone (after a missed `get_exact`); counts the miss."""
        hit = None
        if key.semantic_ok and self._entries:
            vectors = await self._avectors(key)
            assert self._index is not None  # semantic_ok: there is an embedder, so an index
            if self._index.high <= INLINE_SEARCH_ROWS and self._reduced_inline(key):
                hit = self._get_semantic(key, vectors)
            else:
                hit = await asyncio.to_thread(self._get_semantic, key, vectors)
        if hit is None:
            self.stats.misses += 1
        return hit

    def _get_semantic(self, key: CacheKey, vectors: tuple[Vector, Vector]) -> CacheHit | None:
        """Runs inline or in a worker thread (aget_semantic decides). The lock is held only to
        read and to commit, never over the vector product or the verification: the event loop
        takes the same lock for every exact lookup and every store (held throughout, it made
        those wait ~2 ms each, measured)."""
        task_vec, ctx_vec = vectors
        index = self._index
        assert index is not None
        threshold = self.threshold
        form_key = self._form_key(key)  # canonical words (inline only when cheap)
        scope = self._semantic_scope(key)
        with self._lock:
            if not self._entries:
                return None
            same_form = self._by_form.get(form_key) if form_key else None
            if same_form is not None:
                entry = self._entries[same_form]
                if not self._expired(entry):
                    similarity = index.task_similarity(entry.slot, task_vec)
                    return self._semantic_hit(same_form, similarity, VERIFIED_SAME_FORM, key)
                self._remove(same_form)
            high = index.high
        # Scored without the lock; each slot is re-checked under it (and verified).
        sims = index.scores(task_vec, high)
        with self._lock:
            candidates = []
            for slot in map(int, index.ranked(sims, scope, threshold)):
                if key.context and index.context_similarity(slot, ctx_vec) < threshold:
                    continue
                entry_id = index.entry(slot)
                entry = self._entries[entry_id]
                if self._expired(entry):
                    self._remove(entry_id)
                    continue
                if self._verifier is None:
                    return self._semantic_hit(entry_id, float(sims[slot]), "not verified", key)
                candidates.append((entry_id, entry.forms, float(sims[slot])))
                if len(candidates) == MAX_VERIFIED_CANDIDATES:
                    break
        assert self._verifier is not None or not candidates
        for entry_id, forms, similarity in candidates:
            verdict = self._verifier.verify_turns(  # type: ignore[union-attr]
                forms, key.forms, explain=not key.veto
            )
            if verdict.same:
                with self._lock:
                    if entry_id in self._entries:  # not evicted while we verified
                        return self._semantic_hit(entry_id, similarity, verdict.reason, key)
                continue
            key.vetoed += 1
            key.veto = key.veto or verdict.reason
            self.stats.vetoes += 1
        return None

    def _semantic_hit(
        self, entry_id: int, similarity: float, verification: str, key: CacheKey
    ) -> CacheHit:
        self._entries.move_to_end(entry_id)
        self.stats.semantic_hits += 1
        entry = self._entries[entry_id]
        return self._hit(entry, "semantic", similarity, verification, key.vetoed)

    # -- store -----------------------------------------------------------------------------
    def put(
        self,
        key: CacheKey,
        text: str,
        usage: types_pb2.Usage,
        *,
        outcome: Outcome,
        model: str,
        node_id: str,
        finish_reason: int = types_pb2.FINISH_REASON_STOP,
        tier: int = 0,
        index: bool = True,
    ) -> bool:
        """Store a response; returns False (and stores nothing) unless it is complete.

        `index=False` stores it for the exact tier only (`aput` adds the semantic index later).
        """
        storable = outcome is Outcome.COMPLETE and finish_reason in (
            types_pb2.FINISH_REASON_STOP,
            types_pb2.FINISH_REASON_LENGTH,
        )
        if not storable or not text:
            self.stats.refused += 1
            return False
        vectors = self._vectors(key) if index and key.semantic_ok else None
        form_key = self._form_key(key) if vectors is not None else ""
        stored_usage = types_pb2.Usage()
        stored_usage.CopyFrom(usage)
        with self._lock:
            old = self._by_exact.get(key.exact)
            if old is not None:
                self._remove(old)
            while len(self._entries) >= self.settings.max_entries:
                self._remove(next(iter(self._entries)))
                self.stats.evictions += 1
            entry_id = self._next_id
            self._next_id += 1
            entry = CacheEntry(
                key.scope.key,
                key.exact,
                text,
                stored_usage,
                model,
                node_id,
                finish_reason,
                self._clock(),
                tier=tier,
            )
            self._entries[entry_id] = entry
            self._by_exact[key.exact] = entry_id
            if vectors is not None:
                self._attach(entry_id, entry, key, vectors, form_key)
            self.stats.stores += 1
            return True

    def _attach(
        self,
        entry_id: int,
        entry: CacheEntry,
        key: CacheKey,
        vectors: tuple[Vector, Vector],
        form_key: str,
    ) -> None:
        """Give a stored entry its place in the semantic index (lock held)."""
        assert self._index is not None
        entry.slot = self._index.add(entry_id, vectors, self._semantic_scope(key))
        if self._verifier is not None:
            entry.forms = key.forms
        if form_key:
            entry.form_key = form_key
            self._by_form[form_key] = entry_id

    async def aput(
        self,
        key: CacheKey,
        text: str,
        usage: types_pb2.Usage,
        *,
        outcome: Outcome,
        model: str,
        node_id: str,
        finish_reason: int = types_pb2.FINISH_REASON_STOP,
        tier: int = 0,
    ) -> bool:
        """`put`, in two steps: the exact tier at once (a repeat sent right after this answer
        must hit, and no embedding may delay it), then the semantic index once the embedding
        and canonical words are computed off the loop."""
        stored = self.put(
            key,
            text,
            usage,
            outcome=outcome,
            model=model,
            node_id=node_id,
            finish_reason=finish_reason,
            tier=tier,
            index=False,
        )
        if not stored or not key.semantic_ok:
            return stored
        vectors = await self._avectors(key)
        if not self._reduced_inline(key):  # the scope needs them too
            await asyncio.to_thread(lambda: key.forms)
        form_key = self._form_key(key)
        with self._lock:
            entry_id = self._by_exact.get(key.exact)
            entry = self._entries.get(entry_id) if entry_id is not None else None
            if entry is not None and entry.slot < 0:  # still ours, not yet indexed
                self._attach(entry_id, entry, key, vectors, form_key)  # type: ignore[arg-type]
        return stored

    def invalidate(self, *, tenant: str | None = None, policy_version: str | None = None) -> int:
        """Drop entries of a tenant and/or a policy version (e.g. after a policy change)."""
        with self._lock:
            doomed = [
                eid
                for eid, e in self._entries.items()
                if (tenant is None or e.scope.split("\x1f", 1)[0] == tenant)
                and (policy_version is None or e.scope.split("\x1f")[1] == policy_version)
            ]
            for eid in doomed:
                self._remove(eid)
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            for eid in list(self._entries):
                self._remove(eid)

    # -- internals (lock held) -------------------------------------------------------------
    def _expired(self, entry: CacheEntry) -> bool:
        return self._clock() - entry.stored_at > self.settings.ttl_s

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        if self._by_exact.get(entry.exact) == entry_id:
            del self._by_exact[entry.exact]
        if entry.form_key and self._by_form.get(entry.form_key) == entry_id:
            del self._by_form[entry.form_key]
        if entry.slot >= 0 and self._index is not None:
            self._index.release(entry.slot)

    def _hit(
        self, entry: CacheEntry, kind: str, similarity: float, verification: str, vetoed: int = 0
    ) -> CacheHit:
        usage = types_pb2.Usage()
        usage.CopyFrom(entry.usage)
        return CacheHit(
            entry.text,
            usage,
            entry.model,
            entry.node_id,
            entry.finish_reason,
            kind,
            similarity,
            self._clock() - entry.stored_at,
            entry.tier,
            verification,
            vetoed,
        )

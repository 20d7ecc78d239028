"""Response cache: an exact tier (normalised conversation hash), then a semantic tier.

Both tiers are scoped: a key covers the tenant, the guard-policy version (so an answer never
outlives the policy that admitted it), the model or tier the answer was routed to, and the
sampling parameters. The exact key hashes every message, so it is multi-turn safe by
construction. The semantic tier compares the last user turn and, separately, the context before
it, and also demands the same number of turns and the same numbers in the text: MiniLM scores
"what is 2+3" and "what is 2+4" as near-identical, and a cache must never answer one with the
other. Conversations longer than MiniLM can see (256 tokens) use only the exact tier.

Only complete answers are stored; `put` takes an explicit outcome so blocked, failed and
truncated-by-abort responses cannot slip in. The vector index is a preallocated numpy matrix,
one brute-force matrix-vector product per lookup (~1 ms at 1e4 x 384), with LRU eviction.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mesh.config import CacheSettings
from mesh.router.cache_keys import CacheHit, CacheKey, CacheScope, Outcome, sampling_key
from mesh.router.embeddings import Embedder, Vector, aembed, embedding_text, normalise
from mesh.v1 import types_pb2

# The key and hit types live in cache_keys.py; they are part of this module's API too.
__all__ = [
    "CacheHit",
    "CacheKey",
    "CacheScope",
    "Outcome",
    "ResponseCache",
    "as_vector",
    "sampling_key",
]
Clock = Callable[[], float]


@dataclass
class _Entry:
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


@dataclass
class _Stats:
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    stores: int = 0
    refused: int = 0
    evictions: int = 0


class ResponseCache:
    """Thread-safe exact + semantic cache; `aget`/`aput` keep embedding off the event loop."""

    def __init__(
        self,
        settings: CacheSettings | None = None,
        embedder: Embedder | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings or CacheSettings()
        self._embedder = embedder if self.settings.semantic else None
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # LRU order
        self._by_exact: dict[str, int] = {}
        self._next_id = 0
        self.stats = _Stats()
        cap = self.settings.max_entries
        dim = self._embedder.dim if self._embedder else 0
        self._task_vecs = np.zeros((cap, dim), dtype=np.float32)
        self._ctx_vecs = np.zeros((cap, dim), dtype=np.float32)
        self._slot_entry = np.full(cap, -1, dtype=np.int64)  # entry id per slot, -1 free
        self._slot_scope = np.zeros(cap, dtype=np.int64)  # hashed scope+turns+numbers
        self._free = list(range(cap - 1, -1, -1))

    def __len__(self) -> int:
        return len(self._entries)

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
        # The task text is the tier estimator's too: the shared embedder's memo answers it.
        task = embedding_text(key.task)
        return [task, key.context] if key.context else [task]

    @staticmethod
    def _pair(rows: Vector) -> tuple[Vector, Vector]:
        return (rows[0], rows[1]) if len(rows) > 1 else (rows[0], np.zeros_like(rows[0]))

    def _vectors(self, key: CacheKey) -> tuple[Vector, Vector]:
        if key.vectors is None:
            assert self._embedder is not None
            key.vectors = self._pair(self._embedder.embed(self._texts(key)))
        return key.vectors

    async def _avectors(self, key: CacheKey) -> tuple[Vector, Vector]:
        if key.vectors is None:
            assert self._embedder is not None
            key.vectors = self._pair(await aembed(self._embedder, self._texts(key)))
        return key.vectors

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
            return self._hit(entry, "exact", 1.0)

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
            # ~1 ms at 1e4 entries: worth a thread hop, an empty cache is not.
            hit = await asyncio.to_thread(self._get_semantic, key, vectors)
        if hit is None:
            self.stats.misses += 1
        return hit

    def _get_semantic(self, key: CacheKey, vectors: tuple[Vector, Vector]) -> CacheHit | None:
        task_vec, ctx_vec = vectors
        threshold = self.settings.similarity_threshold
        with self._lock:
            if not self._entries:
                return None
            sims = self._task_vecs @ task_vec
            sims[self._slot_scope != self._semantic_scope(key)] = -1.0
            sims[self._slot_entry < 0] = -1.0
            order = np.flatnonzero(sims >= threshold)
            if order.size == 0:
                return None
            for slot in order[np.argsort(-sims[order])]:
                if key.context and float(self._ctx_vecs[slot] @ ctx_vec) < threshold:
                    continue
                entry_id = int(self._slot_entry[slot])
                entry = self._entries[entry_id]
                if self._expired(entry):
                    self._remove(entry_id)
                    continue
                self._entries.move_to_end(entry_id)
                self.stats.semantic_hits += 1
                return self._hit(entry, "semantic", float(sims[slot]))
            return None

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
    ) -> bool:
        """Store a response; returns False (and stores nothing) unless it is complete."""
        storable = outcome is Outcome.COMPLETE and finish_reason in (
            types_pb2.FINISH_REASON_STOP,
            types_pb2.FINISH_REASON_LENGTH,
        )
        if not storable or not text:
            self.stats.refused += 1
            return False
        vectors = self._vectors(key) if key.semantic_ok else None
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
            entry = _Entry(
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
            if vectors is not None:
                slot = self._free.pop()
                self._task_vecs[slot], self._ctx_vecs[slot] = vectors
                self._slot_entry[slot] = entry_id
                self._slot_scope[slot] = self._semantic_scope(key)
                entry.slot = slot
            self._entries[entry_id] = entry
            self._by_exact[key.exact] = entry_id
            self.stats.stores += 1
            return True

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
        """`put` with any embedding still to compute done off the event loop."""
        if key.semantic_ok and outcome is Outcome.COMPLETE:
            await self._avectors(key)
        return self.put(
            key,
            text,
            usage,
            outcome=outcome,
            model=model,
            node_id=node_id,
            finish_reason=finish_reason,
            tier=tier,
        )

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
    def _expired(self, entry: _Entry) -> bool:
        return self._clock() - entry.stored_at > self.settings.ttl_s

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        if self._by_exact.get(entry.exact) == entry_id:
            del self._by_exact[entry.exact]
        if entry.slot >= 0:
            self._slot_entry[entry.slot] = -1
            self._free.append(entry.slot)

    def _hit(self, entry: _Entry, kind: str, similarity: float) -> CacheHit:
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
        )


def as_vector(values: npt.ArrayLike) -> Vector:
    """L2-normalised float32 copy (for embedders written in tests or benchmarks)."""
    arr = np.asarray(values, dtype=np.float32)
    norm = float(np.linalg.norm(arr))
    out: Vector = arr / norm if norm else arr
    return out

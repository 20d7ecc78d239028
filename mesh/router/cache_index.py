"""The semantic cache's vector index: preallocated numpy rows, one slot per indexed answer.

A lookup is one brute-force matrix-vector product over the used rows (~1 ms at 1e4 x 384),
which the cache runs without its lock; the slot bookkeeping below is done under it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mesh.embeddings.batching import Vector

Scores = npt.NDArray[np.float32]


class VectorIndex:
    """Task and context vectors of stored answers, with the entry and scope hash of each slot.

    Not thread-safe on its own: ResponseCache holds its lock around every call but `scores`.
    """

    def __init__(self, capacity: int, dim: int) -> None:
        self._task = np.zeros((capacity, dim), dtype=np.float32)
        self._context = np.zeros((capacity, dim), dtype=np.float32)
        self._entry = np.full(capacity, -1, dtype=np.int64)  # entry id per slot, -1 free
        self._scope = np.zeros(capacity, dtype=np.int64)  # hashed scope+turns+numbers
        self._free = list(range(capacity - 1, -1, -1))  # popped lowest first: slots stay packed
        self._high = 0  # one past the highest slot ever used: searches read only [:high]

    def add(self, entry_id: int, vectors: tuple[Vector, Vector], scope: int) -> int:
        """Index an entry; returns its slot (the caller keeps it to release it)."""
        slot = self._free.pop()
        self._high = max(self._high, slot + 1)
        self._task[slot], self._context[slot] = vectors
        self._entry[slot] = entry_id
        self._scope[slot] = scope
        return slot

    def release(self, slot: int) -> None:
        self._entry[slot] = -1
        self._free.append(slot)

    @property
    def high(self) -> int:
        return self._high

    def task_similarity(self, slot: int, task_vec: Vector) -> float:
        return float(self._task[slot] @ task_vec)

    def context_similarity(self, slot: int, context_vec: Vector) -> float:
        return float(self._context[slot] @ context_vec)

    def entry(self, slot: int) -> int:
        return int(self._entry[slot])

    def scores(self, task_vec: Vector, high: int) -> Scores:
        """Cosine of every used slot below `high` (no lock needed: a row written meanwhile can
        only give a wrong score to a slot that `ranked` then re-checks under the lock)."""
        sims: Scores = self._task[:high] @ task_vec
        return sims

    def ranked(self, sims: Scores, scope: int, threshold: float) -> npt.NDArray[np.intp]:
        """Slots of the same scope at or above `threshold`, most similar first (lock held)."""
        high = len(sims)
        sims[self._scope[:high] != scope] = -1.0
        sims[self._entry[:high] < 0] = -1.0
        order = np.flatnonzero(sims >= threshold)
        ranked: npt.NDArray[np.intp] = order[np.argsort(-sims[order])]
        return ranked


def as_vector(values: npt.ArrayLike) -> Vector:
    """L2-normalised float32 copy (for embedders written in tests or benchmarks)."""
    arr = np.asarray(values, dtype=np.float32)
    norm = float(np.linalg.norm(arr))
    out: Vector = arr / norm if norm else arr
    return out

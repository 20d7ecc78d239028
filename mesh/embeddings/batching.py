"""Sentence embeddings: MiniLM, shared by the tier estimator, the cache and content safety.

A new prompt is embedded once, not once per user: the tier estimator, the semantic cache and the
content-safety guard ask for the same normalised text (`embedding_text`), and a memo of recent texts
answers the second ask. Concurrent requests are batched: one worker thread owns the model and embeds
whatever is queued in one forward pass. Measured on 2 cores (router "auto" path, fake engine, c32):
one thread per request under `asyncio.to_thread` ran six MiniLM calls at once with 2 intra-op
threads each and the router passed 16 requests/s; see benchmarks/router.py for the figure now.

The model runs on ONNX Runtime (mesh/embeddings/minilm_onnx.py), never on torch: the router
process must stay small (torch alone cost ~700 MB RSS) and a router-only install has no torch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from mesh.embeddings.minilm_assets import Precision
from mesh.embeddings.minilm_onnx import MiniLMEmbedder

Vector = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Texts to L2-normalised float32 rows (so a dot product is the cosine)."""

    dim: int

    def embed(self, texts: Sequence[str]) -> Vector: ...  # pragma: no cover


async def aembed(embedder: Embedder, texts: Sequence[str]) -> Vector:
    """Embed without blocking the event loop (batched where the embedder supports it)."""
    native = getattr(embedder, "aembed", None)
    if native is not None:
        result: Vector = await native(texts)
        return result
    return await asyncio.to_thread(embedder.embed, texts)


_Job = tuple[str, "concurrent.futures.Future[Vector]"]


class BatchingEmbedder:
    """A memo of recent texts in front of one worker thread that embeds queued texts together.

    Thread-safe and usable from any event loop (`aembed`) or thread (`embed`). Texts of one
    batch are sorted by length so padding stays small; a failure reaches every waiting caller.
    """

    def __init__(
        self,
        inner: Embedder,
        *,
        memo_entries: int = 2048,
        max_batch: int = 64,
    ) -> None:
        self.inner = inner
        self.dim = inner.dim
        self._memo: OrderedDict[str, Vector] = OrderedDict()
        self._memo_entries = memo_entries
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self.batches = 0  # forward passes run (for tests and benchmarks)

    # -- memo -----------------------------------------------------------------------------
    def _recall(self, text: str) -> Vector | None:
        with self._lock:
            vector = self._memo.get(text)
            if vector is not None:
                self._memo.move_to_end(text)
            return vector

    def _remember(self, text: str, vector: Vector) -> None:
        with self._lock:
            self._memo[text] = vector
            self._memo.move_to_end(text)
            while len(self._memo) > self._memo_entries:
                self._memo.popitem(last=False)

    # -- worker ---------------------------------------------------------------------------
    def _submit(self, text: str) -> concurrent.futures.Future[Vector]:
        future: concurrent.futures.Future[Vector] = concurrent.futures.Future()
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="mesh-embedder", daemon=True
                )
                self._worker.start()
        self._jobs.put((text, future))
        return future

    def _work(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            while len(jobs) < self._max_batch:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        texts = sorted({text for text, _ in jobs}, key=len)
        try:
            rows = self.inner.embed(texts)
        except BaseException as exc:  # every waiter must hear about it
            for _, future in jobs:
                future.set_exception(exc)
            return
        self.batches += 1
        by_text = {text: rows[i] for i, text in enumerate(texts)}
        for text, vector in by_text.items():
            self._remember(text, vector)
        for text, future in jobs:
            future.set_result(by_text[text])

    # -- public ---------------------------------------------------------------------------
    def _futures(self, texts: Sequence[str]) -> list[Vector | concurrent.futures.Future[Vector]]:
        out: list[Vector | concurrent.futures.Future[Vector]] = []
        for text in texts:
            known = self._recall(text)
            out.append(known if known is not None else self._submit(text))
        return out

    def embed(self, texts: Sequence[str]) -> Vector:
        parts = self._futures(texts)
        rows = [p.result() if isinstance(p, concurrent.futures.Future) else p for p in parts]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    async def aembed(self, texts: Sequence[str]) -> Vector:
        parts = self._futures(texts)
        rows = [
            await asyncio.wrap_future(p) if isinstance(p, concurrent.futures.Future) else p
            for p in parts
        ]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)


_shared: dict[tuple[str, str, str], BatchingEmbedder] = {}
_shared_lock = threading.Lock()
Pool = Literal["router", "guards"]


def shared_embedder(
    precision: Precision = "int8", pool: Pool = "router", overlay: Path | None = None
) -> BatchingEmbedder:
    """The process-wide embedder of a precision (`router.embeddings.precision`, whose default
    this is) for one pool of users, each pool with its own worker thread.

    "router" (the tier estimator and the semantic cache: one run per new prompt) and "guards"
    (the content-safety model: up to 64 runs for a long text) do not share a worker, so a
    guard's long text never queues the routing of other requests behind it; the second pool
    costs a second model in memory (~25 MB int8), only in a process that uses it. `overlay`:
    MiniLM with some tensors replaced (mesh.embeddings.minilm_assets.converted_minilm), e.g.
    the content-safety guard's fine-tuned top layers: a model of its own, in its own pool.
    """
    key = (precision, pool, "" if overlay is None else str(overlay))
    with _shared_lock:
        embedder = _shared.get(key)
        if embedder is None:
            # int8 quantises activations per run: a text embedded beside others gets a slightly
            # other vector than alone, and a routing or cache decision must not depend on what
            # else was in flight. So int8 embeds one text per run (still 2.0 ms against fp32's
            # 2.6 ms per text in an 8-text batch, measured here); fp32 batches.
            embedder = _shared[key] = BatchingEmbedder(
                MiniLMEmbedder(precision=precision, overlay=overlay),
                max_batch=1 if precision == "int8" else 64,
            )
        return embedder

"""The shared embedder: batching, the memo that lets estimator and cache share one embedding,
failures reaching every caller, and agreement with the real MiniLM model."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from mesh.config import CacheSettings, EstimatorSettings
from mesh.router.cache import CacheScope, ResponseCache, as_vector
from mesh.router.embeddings import BatchingEmbedder, Vector, embedding_text
from mesh.router.tier_estimator import TierEstimator
from mesh.v1 import types_pb2 as t


class CountingEmbedder:
    """A hashing test embedder (not a model) that records every text it is asked to embed."""

    dim = 16

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.texts: list[str] = []
        self.calls = 0
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vector:
        with self._lock:
            self.calls += 1
            self.texts.extend(texts)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("scripted embedder failure")
        rows = [
            np.frombuffer(hashlib.sha256(x.encode()).digest()[:16], dtype=np.uint8) for x in texts
        ]
        return np.stack([as_vector(r.astype(np.float32) - 127.5) for r in rows])


def _user(text: str) -> list[t.ChatMessage]:
    return [t.ChatMessage(role=t.ROLE_USER, content=text)]


def test_memo_answers_a_text_seen_before() -> None:
    inner = CountingEmbedder()
    embedder = BatchingEmbedder(inner, memo_entries=2)
    first = embedder.embed(["a", "b"])
    again = embedder.embed(["b", "a"])
    assert np.array_equal(first[0], again[1]) and np.array_equal(first[1], again[0])
    assert sorted(inner.texts) == ["a", "b"]
    embedder.embed(["c"])  # evicts "b": "a" was asked for last
    embedder.embed(["a", "b"])
    assert inner.texts.count("a") == 1 and inner.texts.count("b") == 2


async def test_concurrent_callers_share_forward_passes() -> None:
    inner = CountingEmbedder(delay_s=0.2)
    embedder = BatchingEmbedder(inner)
    rows = await asyncio.gather(*(embedder.aembed([f"prompt {i}"]) for i in range(32)))
    assert all(r.shape == (1, 16) for r in rows)
    # The first text runs alone; everything queued meanwhile goes in the next pass.
    assert embedder.batches <= 3 and inner.calls == embedder.batches
    assert sorted(inner.texts) == sorted(f"prompt {i}" for i in range(32))
    direct = CountingEmbedder().embed(["prompt 7"])[0]
    assert np.allclose(rows[7][0], direct)


async def test_a_failure_reaches_every_waiter_and_the_worker_survives() -> None:
    inner = CountingEmbedder(delay_s=0.05, fail=True)
    embedder = BatchingEmbedder(inner)
    results = await asyncio.gather(
        *(embedder.aembed([f"x{i}"]) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    inner.fail = False
    assert (await embedder.aembed(["x1"])).shape == (1, 16)
    with pytest.raises(RuntimeError):
        inner.fail = True
        embedder.embed(["fresh"])


async def test_estimator_and_cache_embed_a_new_prompt_once() -> None:
    inner = CountingEmbedder()
    embedder = BatchingEmbedder(inner)
    estimator = TierEstimator(EstimatorSettings(), embedder=embedder)
    estimator.warm_up()
    cache = ResponseCache(CacheSettings(), embedder=embedder)
    scope = CacheScope.build("acme", "pv1", "tier:small")
    prompt = "  What is   the capital of Peru? "
    before = len(inner.texts)
    await estimator.aestimate(_user(prompt))
    assert await cache.aget(cache.key(scope, _user(prompt))) is None
    assert inner.texts[before:] == [embedding_text(prompt)]


def test_batched_minilm_matches_the_model_alone(minilm: BatchingEmbedder) -> None:
    texts = ["How do volcanoes form?", "Write a haiku about rain in Lisbon."]
    alone = np.stack([minilm.inner.embed([x])[0] for x in texts])
    batched = minilm.embed(texts)
    assert batched.shape == (2, 384)
    assert np.allclose(alone, batched, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)

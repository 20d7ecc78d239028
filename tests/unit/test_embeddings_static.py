"""The static embedder distilled from MiniLM: unit vectors, meaning kept well enough to propose
cache candidates, a corrupt table refused, the table built once into the model cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mesh.embeddings.static import StaticEmbedder, shared_static_embedder
from mesh.embeddings.static_table import DIM, TABLE_FILE, static_table, table_dir


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    embedder = shared_static_embedder()
    embedder.load()
    return embedder


def test_rows_are_unit_length_and_deterministic(static: StaticEmbedder) -> None:
    texts = ["What is the capital of Peru?", "Write a haiku about the sea.", "x" * 5000]
    rows = static.embed(texts)
    assert rows.shape == (3, DIM) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(rows, StaticEmbedder().embed(texts))


def test_mean_and_max_for_the_tier_estimate(static: StaticEmbedder) -> None:
    both = shared_static_embedder("mean+max")
    assert both.dim == 2 * DIM and shared_static_embedder("mean+max") is both
    texts = ["Prove that there are infinitely many primes.", "Write a haiku about rain."]
    rows = both.embed(texts)
    assert rows.shape == (2, 2 * DIM)
    # Two unit halves: the cache's mean vector, then the maximum.
    assert np.allclose(rows[:, :DIM], static.embed(texts), atol=1e-6)
    assert np.allclose(np.linalg.norm(rows[:, DIM:], axis=1), 1.0, atol=1e-5)


def test_nothing_to_embed_is_the_zero_vector(static: StaticEmbedder) -> None:
    rows = static.embed(["", "   "])
    assert not rows.any()
    assert static.embed([]).shape == (0, DIM)


def test_a_paraphrase_is_nearer_than_another_question(static: StaticEmbedder) -> None:
    a, b, other = static.embed(
        [
            "How far is Madrid from Barcelona by train?",
            "By train, how far is Barcelona from Madrid?",
            "What is a good recipe for banana bread?",
        ]
    )
    assert float(a @ b) > 0.9 > float(a @ other)


def test_aembed_runs_inline_and_agrees(static: StaticEmbedder) -> None:
    text = ["Explain the Doppler effect."]
    assert np.array_equal(asyncio.run(static.aembed(text)), static.embed(text))


def test_the_table_is_built_once_and_reused(static: StaticEmbedder) -> None:
    folder = static_table(show_progress=False)
    assert folder == table_dir() and (folder / ".mesh-complete").exists()
    stamp = (folder / TABLE_FILE).stat().st_mtime_ns
    assert static_table(show_progress=False) == folder
    assert (folder / TABLE_FILE).stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "table",
    [
        np.zeros((10, DIM), dtype=np.float16),  # not the vocabulary's size
        np.full((30522, DIM), np.nan, dtype=np.float16),  # not finite
    ],
)
def test_a_corrupt_table_is_refused(tmp_path: Path, table: np.ndarray) -> None:
    source = static_table(show_progress=False)
    (tmp_path / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
    np.save(tmp_path / TABLE_FILE, table)
    with pytest.raises(ValueError, match="not a 384-wide table"):
        StaticEmbedder(tmp_path).embed(["hello"])


def test_a_truncated_table_says_how_to_rebuild_it(tmp_path: Path) -> None:
    source = static_table(show_progress=False)
    (tmp_path / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
    (tmp_path / TABLE_FILE).write_bytes((source / TABLE_FILE).read_bytes()[:4096])
    with pytest.raises(ValueError, match=r"unreadable .*delete .* distils it again"):
        StaticEmbedder(tmp_path).embed(["hello"])


def test_the_memo_answers_the_second_ask_and_stays_bounded(static: StaticEmbedder) -> None:
    from mesh.embeddings import static as module

    table = module._load(static_table(show_progress=False))
    first = table.pooled("What is a good name for a goldfish?")
    assert table.pooled("What is a good name for a goldfish?") is first  # no second tokenize
    for i in range(module.MEMO_SIZE + 10):
        table.pooled(f"prompt number {i}")
    assert len(table._memo) == module.MEMO_SIZE
    # the cache's mean and the estimator's mean+max read one computation
    both = shared_static_embedder("mean+max").embed(["Name a red fruit."])[0]
    assert np.array_equal(both[:DIM], static.embed(["Name a red fruit."])[0])


def test_concurrent_threads_get_the_vectors_one_thread_gets(static: StaticEmbedder) -> None:
    """The router embeds on its loop while the guards' and trainers' threads may too: the
    shared memo must never hand one text's vector to another."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"Question {i}: what is {i} times {i + 3}?" for i in range(300)]
    alone = StaticEmbedder(pooling="mean+max").embed(texts)
    both = shared_static_embedder("mean+max")

    def one(i: int) -> np.ndarray:
        return both.embed([texts[i]])[0]

    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(one, list(range(300)) * 3))
    assert all(np.array_equal(row, alone[i % 300]) for i, row in enumerate(rows))

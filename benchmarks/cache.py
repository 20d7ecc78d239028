"""Response-cache micro-benchmark: exact-hit latency and semantic lookup at 1e4 entries.

The index cost does not depend on which model made the vectors, so entries get random unit
vectors from a seeded generator (named as such) instead of 1e4 MiniLM calls; the embedding time
of one query (MiniLM, ~50 ms on 2 cores) is reported apart by the estimator, not here.
Targets (BENCH.md): exact hit <= 20 us; vector lookup <= 1.5 ms at 1e4 entries. Also the
verification of semantic candidates (issue 13), which runs in the lookup thread: a prompt's
canonical words, and checking the 8 nearest candidates (the most one lookup checks) <= 1 ms.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Sequence

import numpy as np

from benchmarks.stats import Row, suite_arguments, write_rows
from mesh.config import CacheSettings
from mesh.embeddings.batching import Vector
from mesh.router.cache import MAX_VERIFIED_CANDIDATES, CacheScope, Outcome, ResponseCache
from mesh.router.cache_verify import QuestionVerifier, minilm_vocabulary
from mesh.router.question_form import question_form
from mesh.v1 import types_pb2 as t

ENTRIES = 10_000
DIM = 384


class SeededRandomEmbedder:
    """Random unit vectors (benchmark only): same cost shape as real embeddings in the index."""

    dim = DIM

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def embed(self, texts: Sequence[str]) -> Vector:
        v = self._rng.standard_normal((len(texts), DIM)).astype(np.float32)
        out: Vector = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out


def _median_us(fn: object, rounds: int = 7, per_round: int = 200) -> float:
    medians = []
    for _ in range(rounds):
        samples = []
        for _ in range(per_round):
            start = time.perf_counter_ns()
            fn()  # type: ignore[operator]
            samples.append((time.perf_counter_ns() - start) / 1e3)
        medians.append(statistics.median(samples))
    return statistics.median(medians)


def main() -> None:
    args = suite_arguments(__doc__).parse_args()  # --quick changes nothing: it takes seconds
    scope = CacheScope.build("bench", "pv1", "tier:small", t.SamplingParams(temperature=0.0))
    cache = ResponseCache(CacheSettings(max_entries=ENTRIES), embedder=SeededRandomEmbedder())
    usage = t.Usage(input_tokens=20, output_tokens=40, cost_usd=1e-5)
    start = time.perf_counter()
    for i in range(ENTRIES):
        msgs = [t.ChatMessage(role=t.ROLE_USER, content=f"question number {i}")]
        cache.put(
            cache.key(scope, msgs),
            f"answer {i}",
            usage,
            outcome=Outcome.COMPLETE,
            model="m",
            node_id="n",
        )
    fill_s = time.perf_counter() - start
    hit_msgs = [t.ChatMessage(role=t.ROLE_USER, content="question number 1234")]

    def exact_hit() -> None:
        assert cache.get_exact(cache.key(scope, hit_msgs)) is not None

    miss_msgs = [t.ChatMessage(role=t.ROLE_USER, content="question number x")]
    miss_key = cache.key(scope, miss_msgs)
    cache._vectors(miss_key)  # embed once; the lookup below is the index cost only

    def vector_lookup() -> None:
        cache._get_semantic(miss_key, miss_key.vectors)  # type: ignore[arg-type]

    exact = _median_us(exact_hit)
    vector = _median_us(vector_lookup, per_round=50) / 1e3
    # Verification: a typical one-line prompt, and a candidate that differs by swapped roles
    # (the verifier tries every reordering before it vetoes: its slowest path).
    stored = "Hi! Is Python faster than Java for a small web server? Thanks."
    asked = "Is Java faster than Python for a small web server?"
    form_us = _median_us(lambda: question_form(stored))
    verifier = QuestionVerifier(minilm_vocabulary())
    stored_form, asked_form = question_form(stored), question_form(asked)
    assert not verifier.verify(stored_form, asked_form).same
    verify_us = _median_us(lambda: verifier.verify(stored_form, asked_form))
    eight_ms = MAX_VERIFIED_CANDIDATES * verify_us / 1e3
    print(f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"fill {ENTRIES} entries: {fill_s:.2f} s")
    print(f"exact hit (key + lookup): {exact:.1f} us  (target <= 20 us)")
    print(f"vector lookup at {ENTRIES} x {DIM}: {vector:.2f} ms  (target <= 1.5 ms)")
    print(f"canonical words of a prompt: {form_us:.1f} us")
    print(f"verify one candidate: {verify_us:.1f} us; {MAX_VERIFIED_CANDIDATES}: {eight_ms:.3f} ms")
    rows = [
        Row("cache exact hit (BENCH)", f"{exact:.1f} us", exact, 20, "<=", "us"),
        Row(
            f"cache vector lookup at {ENTRIES} (BENCH)", f"{vector:.2f} ms", vector, 1.5, "<=", "ms"
        ),
        Row(
            f"cache verification of {MAX_VERIFIED_CANDIDATES} candidates (issue 13)",
            f"{form_us:.0f} us canonical words + {MAX_VERIFIED_CANDIDATES} x {verify_us:.0f} us",
            form_us / 1e3 + eight_ms,
            1.0,
            "<=",
            "ms",
        ),
    ]
    write_rows(rows, args.rows)


if __name__ == "__main__":
    main()

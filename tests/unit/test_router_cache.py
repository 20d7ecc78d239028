"""Response cache: scoping, TTL, LRU eviction, multi-turn safety, refusal of bad answers, and
the verification of semantic candidates (the verifier's own rules: test_cache_verify.py).

The semantic tests use the real MiniLM embedder (session fixture).
"""

from __future__ import annotations

import pytest

from mesh.config import CacheSettings
from mesh.embeddings.batching import BatchingEmbedder
from mesh.router.cache import CacheScope, Outcome, ResponseCache, sampling_key
from mesh.v1 import types_pb2 as t


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _msgs(*turns: str) -> list[t.ChatMessage]:
    roles = [t.ROLE_USER, t.ROLE_ASSISTANT]
    return [t.ChatMessage(role=roles[i % 2], content=c) for i, c in enumerate(turns)]


SCOPE = CacheScope.build("acme", "pv1", "tier:small", t.SamplingParams(temperature=0.0))
USAGE = t.Usage(input_tokens=10, output_tokens=5, cost_usd=0.001)


def _put(
    cache: ResponseCache,
    scope: CacheScope,
    msgs: list[t.ChatMessage],
    text: str,
    outcome: Outcome = Outcome.COMPLETE,
    finish: int = t.FINISH_REASON_STOP,
) -> bool:
    return cache.put(
        cache.key(scope, msgs),
        text,
        USAGE,
        outcome=outcome,
        model="smollm2",
        node_id="n1",
        finish_reason=finish,
    )


def test_exact_hit_normalises_whitespace_and_replays_usage() -> None:
    cache = ResponseCache(CacheSettings(semantic=False))
    assert _put(cache, SCOPE, _msgs("What is  the capital of France?"), "Paris.")
    hit = cache.get(cache.key(SCOPE, _msgs("  What is the capital\nof France? ")))
    assert hit is not None and hit.kind == "exact" and hit.text == "Paris."
    assert hit.usage.output_tokens == 5 and hit.saved_cost_usd == pytest.approx(0.001)
    assert cache.get(cache.key(SCOPE, _msgs("What is the capital of Spain?"))) is None


@pytest.mark.parametrize(
    "other",
    [
        CacheScope.build("other-tenant", "pv1", "tier:small", t.SamplingParams(temperature=0.0)),
        CacheScope.build("acme", "pv2", "tier:small", t.SamplingParams(temperature=0.0)),
        CacheScope.build("acme", "pv1", "tier:frontier", t.SamplingParams(temperature=0.0)),
        CacheScope.build("acme", "pv1", "tier:small", t.SamplingParams(temperature=0.7)),
    ],
)
def test_scope_isolates_tenant_policy_target_and_sampling(other: CacheScope) -> None:
    cache = ResponseCache(CacheSettings(semantic=False))
    _put(cache, SCOPE, _msgs("hello"), "hi")
    assert cache.get(cache.key(other, _msgs("hello"))) is None


def test_sampling_key_distinguishes_unset_from_zero() -> None:
    assert sampling_key(t.SamplingParams()) != sampling_key(t.SamplingParams(temperature=0.0))


def test_never_stores_blocked_failed_or_incomplete() -> None:
    cache = ResponseCache(CacheSettings(semantic=False))
    m = _msgs("q")
    assert not _put(cache, SCOPE, m, "x", Outcome.BLOCKED)
    assert not _put(cache, SCOPE, m, "x", Outcome.FAILED)
    assert not _put(cache, SCOPE, m, "x", Outcome.INCOMPLETE)
    assert not _put(cache, SCOPE, m, "x", finish=t.FINISH_REASON_ABORTED)
    assert not _put(cache, SCOPE, m, "x", finish=t.FINISH_REASON_GUARD_BLOCKED)
    assert len(cache) == 0 and cache.stats.refused == 5


def test_ttl_and_lru_eviction() -> None:
    clock = FakeClock()
    cache = ResponseCache(CacheSettings(semantic=False, max_entries=2, ttl_s=10), clock=clock)
    _put(cache, SCOPE, _msgs("a"), "A")
    _put(cache, SCOPE, _msgs("b"), "B")
    assert cache.get(cache.key(SCOPE, _msgs("a"))) is not None  # a is now most recent
    _put(cache, SCOPE, _msgs("c"), "C")  # evicts b
    assert cache.get(cache.key(SCOPE, _msgs("b"))) is None
    assert cache.get(cache.key(SCOPE, _msgs("a"))) is not None and cache.stats.evictions == 1
    clock.now += 11
    assert cache.get(cache.key(SCOPE, _msgs("c"))) is None and len(cache) == 1


def test_exact_key_covers_every_turn() -> None:
    cache = ResponseCache(CacheSettings(semantic=False))
    _put(cache, SCOPE, _msgs("Tell me a joke", "Why did the chicken...", "another"), "X")
    assert (
        cache.get(cache.key(SCOPE, _msgs("Tell me a fact", "Honey never spoils.", "another")))
        is None
    )
    assert cache.invalidate(policy_version="pv1") == 1 and len(cache) == 0


def test_semantic_hit_and_guards(minilm: BatchingEmbedder) -> None:
    cache = ResponseCache(CacheSettings(), embedder=minilm)
    _put(cache, SCOPE, _msgs("What is the capital city of France?"), "Paris.")
    hit = cache.get(cache.key(SCOPE, _msgs("Hey, what's the capital city of France?")))
    assert hit is not None and hit.kind == "semantic" and hit.text == "Paris."
    assert hit.verification == "verified: same words after normalising"
    # Unrelated question: miss.
    assert cache.get(cache.key(SCOPE, _msgs("How do volcanoes form?"))) is None
    # Near-identical text with different numbers: never the same answer.
    _put(cache, SCOPE, _msgs("What is 17 times 23?"), "391")
    assert cache.get(cache.key(SCOPE, _msgs("What is 17 times 24?"))) is None
    # Another tenant never sees it, even semantically.
    other = CacheScope.build("globex", "pv1", "tier:small", t.SamplingParams(temperature=0.0))
    assert cache.get(cache.key(other, _msgs("Which city is the capital of France?"))) is None


def test_semantic_is_multi_turn_safe(minilm: BatchingEmbedder) -> None:
    cache = ResponseCache(CacheSettings(), embedder=minilm)
    convo = _msgs(
        "Let's talk about Python the programming language.", "Sure!", "How do I install it?"
    )
    _put(cache, SCOPE, convo, "Use the installer from python.org.")
    # Same last question after a different context: must miss.
    snakes = _msgs("Let's talk about keeping pet snakes.", "Sure!", "How do I install it?")
    assert cache.get(cache.key(SCOPE, snakes)) is None
    # Same question alone (fewer turns): must miss.
    assert cache.get(cache.key(SCOPE, _msgs("How do I install it?"))) is None
    # Same context, trivially reworded: hit.
    same = _msgs(
        "Let's talk about Python, the programming language.", "Sure!", "How do I install it?"
    )
    assert cache.get(cache.key(SCOPE, same)) is not None


async def test_async_api(minilm: BatchingEmbedder) -> None:
    cache = ResponseCache(CacheSettings(), embedder=minilm)
    key = cache.key(SCOPE, _msgs("Name the largest planet in the solar system."))
    assert await cache.aget(key) is None
    assert await cache.aput(
        key, "Jupiter.", USAGE, outcome=Outcome.COMPLETE, model="m", node_id="n"
    )
    hit = await cache.aget(cache.key(SCOPE, _msgs("name the largest planet in the solar system")))
    assert hit is not None and hit.text == "Jupiter."


def test_a_vetoed_candidate_is_a_miss_and_says_why(minilm: BatchingEmbedder) -> None:
    cache = ResponseCache(CacheSettings(), embedder=minilm)
    _put(cache, SCOPE, _msgs("Is Python faster than Java?"), "Usually, yes.")
    key = cache.key(SCOPE, _msgs("Is Java faster than Python?"))
    assert cache.get(key) is None  # MiniLM: cosine 0.99; the words say otherwise
    assert (
        key.vetoed == 1 and key.veto == "vetoed: same words in another order (roles or direction)"
    )
    assert cache.stats.vetoes == 1 and cache.stats.misses == 1 and cache.stats.semantic_hits == 0
    # The embedding alone would have served it: what verification is for.
    unverified = ResponseCache(CacheSettings(verify=False, similarity_threshold=0.95), minilm)
    _put(unverified, SCOPE, _msgs("Is Python faster than Java?"), "Usually, yes.")
    hit = unverified.get(unverified.key(SCOPE, _msgs("Is Java faster than Python?")))
    assert hit is not None and hit.verification == "not verified"


def test_a_hit_records_similarity_verification_and_nearer_vetoes(
    minilm: BatchingEmbedder,
) -> None:
    cache = ResponseCache(CacheSettings(), embedder=minilm)
    _put(cache, SCOPE, _msgs("How do I disable two-factor login on GitHub?"), "Off.")
    _put(cache, SCOPE, _msgs("How do I enable two-factor login on GitHub?"), "On.")
    hit = cache.get(cache.key(SCOPE, _msgs("On GitHub, how can I enable two-factor login?")))
    assert hit is not None and hit.text == "On."
    assert 0.7 <= hit.similarity <= 1.0
    assert hit.verification == "verified: same question (1 phrase moved)"
    assert hit.vetoed <= 1  # "disable" is vetoed if MiniLM ranks it nearer


def test_same_canonical_words_hit_below_the_candidate_threshold(
    minilm: BatchingEmbedder,
) -> None:
    settings = CacheSettings(candidate_threshold=0.99)
    cache = ResponseCache(settings, embedder=minilm)
    _put(cache, SCOPE, _msgs("Describe the rules of cricket."), "Two teams ...")
    polite = "Hello! Could you please describe the rules of cricket? Many thanks."
    hit = cache.get(cache.key(SCOPE, _msgs(polite)))
    assert hit is not None and hit.similarity < 0.99
    assert hit.verification == "verified: same words after normalising"


def test_the_canonical_index_is_bounded_with_the_entries(minilm: BatchingEmbedder) -> None:
    cache = ResponseCache(CacheSettings(max_entries=1), embedder=minilm)
    _put(cache, SCOPE, _msgs("Describe the rules of cricket."), "Two teams ...")
    _put(cache, SCOPE, _msgs("Describe the rules of rugby."), "Fifteen ...")  # evicts cricket
    assert len(cache) == 1 and cache.stats.evictions == 1
    assert cache.get(cache.key(SCOPE, _msgs("Please describe the rules of cricket."))) is None


def test_an_exact_hit_stays_a_hash_lookup(minilm: BatchingEmbedder) -> None:
    cache = ResponseCache(CacheSettings(), embedder=minilm)
    _put(cache, SCOPE, _msgs("Is Python faster than Java?"), "Usually, yes.")
    key = cache.key(SCOPE, _msgs("Is  Python faster than Java?"))
    hit = cache.get_exact(key)
    assert hit is not None and hit.kind == "exact" and hit.verification == "exact"
    assert key.vectors is None and not key.has_forms  # no embedding, no canonical words


def test_context_turns_are_verified_too(minilm: BatchingEmbedder) -> None:
    cache = ResponseCache(CacheSettings(), embedder=minilm)
    convo = _msgs("Let's plan a trip to Spain.", "Sure!", "What should I pack?")
    _put(cache, SCOPE, convo, "Sunscreen.")
    opposite = _msgs("Let's not plan a trip to Spain.", "Sure!", "What should I pack?")
    key = cache.key(SCOPE, opposite)
    assert cache.get(key) is None and key.veto == "vetoed: negation or polarity differs"
    polite = _msgs("Hi! Let us plan a trip to Spain.", "Sure!", "What should I pack, please?")
    assert cache.get(cache.key(SCOPE, polite)) is not None


async def test_an_answer_is_an_exact_hit_before_its_embedding_is_ready(
    minilm: BatchingEmbedder,
) -> None:
    """A repeat sent right after an answer must hit: the exact tier is stored at once, and the
    semantic index is added when the (new, so not memoised) embedding arrives."""
    import asyncio

    cache = ResponseCache(CacheSettings(), embedder=minilm)
    text = "Which ocean lies between Africa and Australia, in one word? (unique 7731)"
    writing = asyncio.ensure_future(
        cache.aput(
            cache.key(SCOPE, _msgs(text)),
            "Indian.",
            USAGE,
            outcome=Outcome.COMPLETE,
            model="m",
            node_id="n",
        )
    )
    await asyncio.sleep(0)  # the write has started: it is now waiting on the embedder thread
    assert not writing.done()
    hit = cache.get_exact(cache.key(SCOPE, _msgs(text)))
    assert hit is not None and hit.text == "Indian."
    assert await writing
    # and once indexed, a reworded repeat is a semantic hit
    hit = await cache.aget(cache.key(SCOPE, _msgs(text.lower().rstrip("?") + "?")))
    assert hit is not None and hit.text == "Indian."


async def test_a_small_lookup_runs_inline_and_a_large_one_in_a_thread(
    minilm: BatchingEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a thread hop costs more than a short search (cache.py, INLINE_SEARCH_ROWS);
    a large index or a long prompt still leaves the event loop free."""
    import threading

    import mesh.router.cache as cache_module

    cache = ResponseCache(CacheSettings(), embedder=minilm)
    threads: list[int] = []
    search = cache._get_semantic

    def spy(*args: object) -> object:
        threads.append(threading.get_ident())
        return search(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "_get_semantic", spy)
    await cache.aput(
        cache.key(SCOPE, _msgs("Name the largest planet in the solar system.")),
        "Jupiter.",
        USAGE,
        outcome=Outcome.COMPLETE,
        model="m",
        node_id="n",
    )
    ask = cache.key(SCOPE, _msgs("name the largest planet in the solar system"))
    assert (await cache.aget(ask)) is not None
    long_ask = cache.key(SCOPE, _msgs("name the largest planet in the solar system " * 8))
    await cache.aget(long_ask)  # canonical words of a long prompt cost more than a hop
    monkeypatch.setattr(cache_module, "INLINE_SEARCH_ROWS", 0)
    again = cache.key(SCOPE, _msgs("Name the largest planet in the solar system, please."))
    assert (await cache.aget(again)) is not None
    loop = threading.get_ident()
    assert [ident == loop for ident in threads] == [True, False, False]

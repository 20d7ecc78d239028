"""Hostile `params`: a built-in guard's parameters are bounded, finite and of their own type, so
a policy cannot make the router slow, frozen or huge through them, and each refusal is an
INVALID_POLICY naming file:line and the field. The banned-words matcher, whose cost the word
list sets, stays fast on the worst list the bounds allow and finds what the pair-by-pair scan
it replaced found."""

from __future__ import annotations

import json
import random
import time
import tracemalloc

import pytest
from rapidfuzz import fuzz

from guards.detectors.banned import (
    INLINE_MAX_PHRASES,
    LEET,
    MAX_PHRASE_CHARS,
    MAX_PHRASE_WORDS,
    MAX_PHRASES,
    MAX_TOTAL_CHARS,
    WORD,
    BannedWordsDetector,
)
from guards.detectors.leakage import PromptIndex, SystemPromptLeakageDetector
from guards.detectors.token_limit import approximate_tokens
from guards.errors import InvalidPolicy
from guards.policy_loader import load_policy
from guards.policy_model import MAX_GUARDS
from guards.registry import BUILT_INS, MAX_SCHEMA_NODES
from guards.verdict import Finding


def one_guard(use: str, params: str) -> str:
    """A policy of one guard whose params block is `params` (YAML, one key a line): the first
    key is on line 5."""
    block = "".join(f"      {line}\n" for line in params.splitlines())
    return f"guards:\n  - name: g\n    use: {use}\n    params:\n{block}"


def refused(text: str) -> InvalidPolicy:
    with pytest.raises(InvalidPolicy) as info:
        load_policy(text, "team.yaml")
    err = info.value
    assert err.reason == "INVALID_POLICY" and err.code.value == "INVALID_ARGUMENT"
    return err


def assert_names(err: InvalidPolicy, line: int, field: str, says: str) -> None:
    assert err.message.startswith(f"team.yaml:{line}: invalid policy at {field}: "), err.message
    assert err.metadata["field"] == field
    assert says in err.message, err.message


@pytest.mark.parametrize(
    ("use", "params", "line", "field", "says"),
    [
        # YAML's .nan compares false with every bound and threshold; .inf is no threshold.
        ("prompt_injection", "threshold: .nan", 5, "threshold", "finite number"),
        ("prompt_injection", "threshold: .inf", 5, "threshold", "finite number"),
        ("banned_words", "words: [kaboom]\nthreshold: .nan", 6, "threshold", "finite number"),
        ("presidio", "score_threshold: .nan", 5, "score_threshold", "finite number"),
        ("content_safety", "threshold: -.inf", 5, "threshold", "finite number"),
        # YAML 1.1 reads `yes` as true, which pydantic's lax mode took for 1.
        ("token_limit", "max_tokens: yes", 5, "max_tokens", "valid integer"),
        ("prompt_injection", "threshold: yes", 5, "threshold", "valid number"),
        ("banned_words", "words: [kaboom]\nthreshold: yes", 6, "threshold", "valid number"),
        ("content_safety", "max_windows: yes", 5, "max_windows", "valid integer"),
        ("system_prompt_leakage", "ngram_words: yes", 5, "ngram_words", "valid integer"),
        # ... and strings, floats and numbers where they are not what the field is.
        ("prompt_injection", "threshold: '0.7'", 5, "threshold", "valid number"),
        ("prompt_injection", "classifier: 1", 5, "classifier", "valid boolean"),
        ("code_scan", "bandit: 'no'", 5, "bandit", "valid boolean"),
        ("token_limit", "max_tokens: 8.0", 5, "max_tokens", "valid integer"),
        ("code_scan", "max_block_chars: 1.0e+3", 5, "max_block_chars", "valid integer"),
        # Huge numbers: 1e309 is a string to YAML, 1.0e+309 an infinite float.
        ("token_limit", "max_tokens: 99999999999999999999999", 5, "max_tokens", "10000000"),
        ("token_limit", "max_tokens: 1e309", 5, "max_tokens", "valid integer"),
        ("token_limit", "max_tokens: 1.0e+309", 5, "max_tokens", "valid integer"),
        ("system_prompt_leakage", "ngram_words: 10000", 5, "ngram_words", "less than or equal"),
        ("code_scan", "max_block_chars: 1000000", 5, "max_block_chars", "100000"),
        # Lists: known values only, not empty, not longer than the values there are.
        ("pii", "entities: [EMAIL_ADDRESS, CAT]", 5, "entities", "unknown PII entities: ['CAT']"),
        ("pii", "entities: []", 5, "entities", "at least 1 item"),
        ("pii", "entities: [" + ", ".join(["US_SSN"] * 7) + "]", 5, "entities", "at most 6"),
        ("secrets", "types: [NOPE]", 5, "types", "unknown secret types: ['NOPE']"),
        ("secrets", "types: []", 5, "types", "at least 1 item"),
        ("content_safety", "categories: [gossip]", 5, "categories", "unknown categories"),
        ("content_safety", "categories: []", 5, "categories", "at least 1 item"),
        ("presidio", "entities: []", 5, "entities", "at least 1 item"),
        ("presidio", f"entities: [{'X' * 65}]", 5, "entities[0]", "at most 64 characters"),
        ("code_scan", "skip: [B101, everything]", 5, "skip[1]", "should match pattern"),
    ],
)
def test_hostile_params_are_refused_naming_the_field(
    use: str, params: str, line: int, field: str, says: str
) -> None:
    err = refused(one_guard(use, params))
    assert_names(err, line, f"guards[0].params.{field}", says)


REQUIRED = {
    "banned_words": "words: [kaboom]",
    "token_limit": "max_tokens: 5",
    "json_schema": "schema: {type: object}",
}


@pytest.mark.parametrize("use", sorted(BUILT_INS))
def test_no_built_in_takes_an_unknown_key(use: str) -> None:
    params = "\n".join(filter(None, [REQUIRED.get(use, ""), "unexpected: 1"]))
    line = 4 + len(params.splitlines())
    err = refused(one_guard(use, params))
    assert_names(err, line, "guards[0].params.unexpected", "Extra inputs are not permitted")


def words(count: int, length: int, rng: random.Random) -> list[str]:
    """`count` distinct lower-case words of `length` letters."""
    out: dict[str, None] = {}
    while len(out) < count:
        out["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))] = None
    return list(out)


def banned_policy(phrases: list[str], threshold: float = 88) -> str:
    return one_guard("banned_words", f"words: {json.dumps(phrases)}\nthreshold: {threshold}")


def test_banned_words_list_bounds() -> None:
    rng = random.Random(1)
    err = refused(banned_policy(words(MAX_PHRASES + 1, 5, rng)))
    assert_names(err, 5, "guards[0].params.words", f"at most {MAX_PHRASES} items")

    too_long = "x" * (MAX_PHRASE_CHARS + 1)
    err = refused(banned_policy(["kaboom", too_long]))
    assert_names(err, 5, "guards[0].params.words[1]", f"at most {MAX_PHRASE_CHARS}")
    # Measured as matched: "İ" lower-cases to two characters.
    err = refused(banned_policy(["kaboom", "İ" * (MAX_PHRASE_CHARS // 2 + 1)]))
    assert_names(err, 5, "guards[0].params.words[1]", f"at most {MAX_PHRASE_CHARS}")
    assert load_policy(banned_policy(["x" * MAX_PHRASE_CHARS + "   "]))  # as matched: fits

    many_words = " ".join(["go"] * (MAX_PHRASE_WORDS + 1))
    err = refused(banned_policy(["kaboom", many_words]))
    assert_names(err, 5, "guards[0].params.words[1]", f"at most {MAX_PHRASE_WORDS} words")

    err = refused(banned_policy(["kaboom", "   "]))
    assert_names(err, 5, "guards[0].params.words[1]", "blank phrase")

    per_phrase = MAX_PHRASE_CHARS - 4
    total = words(MAX_TOTAL_CHARS // per_phrase + 1, per_phrase, rng)
    err = refused(banned_policy(total))
    assert_names(err, 5, "guards[0].params.words", f"at most {MAX_TOTAL_CHARS:,}")


def banned_guards(*lists: list[str], indent: str = "  ", first: int = 0) -> str:
    return "".join(
        f"{indent}- name: b{first + i}\n{indent}  use: banned_words\n"
        f"{indent}  params:\n{indent}    words: {json.dumps(phrases)}\n"
        for i, phrases in enumerate(lists)
    )


def test_a_banned_list_split_over_guards_is_bounded_in_all() -> None:
    """A request runs every banned_words guard of its list: 38 guards of 2,000 phrases (a 1 MiB
    policy) took 27 s of CPU on a 32k-token request, 15 of the old 5,000 took 12.8 s."""
    rng = random.Random(2)
    half = MAX_PHRASES // 2 + 1
    first, second = words(half, 5, rng), words(half, 6, rng)
    err = refused("guards:\n" + banned_guards(first, second))
    assert f"guards ['b0', 'b1'] list {2 * half:,} phrases in all" in err.message, err.message
    assert f"at most {MAX_PHRASES:,} phrases in all" in err.message
    # Within the budget on their own, past it where a tenant adds a list to the base one.
    base = "guards:\n" + banned_guards(first)
    assert load_policy(base)
    tenant = "tenants:\n  acme:\n    add:\n" + banned_guards(second, indent="      ", first=1)
    err = refused(base + tenant)
    assert "guards ['b0', 'b1'] (tenant 'acme') list" in err.message, err.message
    # Characters too: two lists of 1,000 phrases of 11 characters.
    long_ones = [words(1000, 11, rng), words(1000, 11, rng)]
    assert 2 * 1000 <= MAX_PHRASES < MAX_TOTAL_CHARS < 2 * 11_000
    err = refused("guards:\n" + banned_guards(*long_ones))
    assert "list 22,000 characters in all" in err.message, err.message


def test_a_json_schema_is_bounded_in_nodes() -> None:
    """A `oneOf` of 20,000 `const`s (60,000 nodes) held the event loop 0.67 s on each 8 KB
    answer; the bound keeps such a schema to a few thousand nodes."""
    branches = [{"const": i} for i in range(MAX_SCHEMA_NODES // 3 + 1)]
    err = refused(one_guard("json_schema", "schema: " + json.dumps({"oneOf": branches})))
    assert_names(err, 5, "guards[0].params.schema", f"more than {MAX_SCHEMA_NODES:,} nodes")
    fits = [{"const": i} for i in range(MAX_SCHEMA_NODES // 3 - 10)]
    assert load_policy(one_guard("json_schema", "schema: " + json.dumps({"oneOf": fits})))


def test_a_request_runs_a_bounded_number_of_guards() -> None:
    """19,000 `secrets` guards (a 600 KB policy, within the loader's size and node bounds) held
    the event loop 0.5 s on a 1 KB prompt."""
    guard = "  - {{name: g{i}, use: secrets}}\n"
    many = "guards:\n" + "".join(guard.format(i=i) for i in range(MAX_GUARDS + 1))
    err = refused(many)
    assert err.metadata["field"] == "guards" and f"at most {MAX_GUARDS} items" in err.message
    base = "guards:\n" + "".join(guard.format(i=i) for i in range(MAX_GUARDS))
    assert load_policy(base)
    added = "tenants:\n  acme:\n    add:\n      - {name: extra, use: pii}\n"
    err = refused(base + added)
    assert f"tenant 'acme' runs {MAX_GUARDS + 1} guards; at most {MAX_GUARDS}" in err.message
    assert load_policy(base + added.replace("add:", "disable: [g0]\n    add:"))


def test_a_use_is_bounded_in_length() -> None:
    err = refused("guards:\n  - name: g\n    use: " + "a" * 201 + "\n")
    assert_names(err, 3, "guards[0].use", "at most 200 characters")


def worst_banned_case() -> tuple[list[str], str]:
    """The list the bounds allow that costs the most on a 32k-token text: MAX_PHRASES phrases
    of 9 characters (two words) and a text of distinct 4-letter words, the most words a
    32k-token text holds, so that every two-word window is a fuzzy candidate for every
    phrase."""
    vocabulary = words(24_000 + 2 * MAX_PHRASES, 4, random.Random(7))
    firsts, seconds = vocabulary[24_000 : 24_000 + MAX_PHRASES], vocabulary[24_000 + MAX_PHRASES :]
    phrases = [f"{a} {b}" for a, b in zip(firsts, seconds, strict=True)]
    text = " ".join(vocabulary[:24_000])
    assert sum(map(len, phrases)) <= MAX_TOTAL_CHARS and approximate_tokens(text) == 32_000
    return phrases, text


def test_the_worst_banned_list_checks_a_32k_token_text_in_well_under_two_seconds() -> None:
    """Before: the pair-by-pair matcher took 1.8 s per 1,000 words of this text (~43 s for all
    24,000; 0.35 s for 5,000 single words on a 1 KB prompt, 55 s on a 24,000-word text). Now
    ~0.3 s here (2 busy shared cores), in a worker thread: rapidfuzz releases the GIL while it
    compares."""
    phrases, text = worst_banned_case()
    built = load_policy(banned_policy(phrases, threshold=50), "team.yaml").guards_for("")[0]
    assert built.guard.cpu_heavy  # a list this long never runs on the event loop
    detector = built.guard.detector  # type: ignore[attr-defined]
    started = time.perf_counter()
    found = detector.find(text)
    elapsed = time.perf_counter() - started
    assert len(found) > 23_000  # of 23,999 windows, each a candidate: the worst case
    assert elapsed < 2.0, elapsed


def test_an_inline_banned_list_is_cheap_on_the_longest_inline_text() -> None:
    """The longest list that runs on the event loop, on the longest text it runs on there
    (8 KB: guards.chain.OFF_LOOP_CHARS) shaped as above: ~4 ms."""
    phrases, text = worst_banned_case()
    built = load_policy(banned_policy(phrases[:INLINE_MAX_PHRASES], 50)).guards_for("")[0]
    assert not built.guard.cpu_heavy
    text = text[:8192]
    started = time.perf_counter()
    built.guard.detector.find(text)  # type: ignore[attr-defined]
    assert time.perf_counter() - started < 0.1


def pair_by_pair(phrases: list[str], threshold: float, text: str) -> list[Finding]:
    """The matcher as it was: every phrase against every window of its number of words."""
    targets = [p.lower().translate(LEET).split() for p in phrases if p.strip()]
    spans = [(m.start(), m.end(), m.group().lower().translate(LEET)) for m in WORD.finditer(text)]
    found = []
    for phrase in targets:
        n, target = len(phrase), " ".join(phrase)
        for i in range(len(spans) - n + 1):
            window = " ".join(s[2] for s in spans[i : i + n])
            if window == target:
                found.append(Finding("BANNED_WORD", spans[i][0], spans[i + n - 1][1], 1.0))
            elif len(target) >= 5 and abs(len(window) - len(target)) <= 2:
                ratio = fuzz.ratio(window, target)
                if ratio >= threshold:
                    found.append(
                        Finding("BANNED_WORD", spans[i][0], spans[i + n - 1][1], ratio / 100)
                    )
    return found


def best_per_span(found: list[Finding]) -> list[tuple[int, int, float]]:
    best: dict[tuple[int, int], float] = {}
    for f in found:
        best[f.start, f.end] = max(best.get((f.start, f.end), 0.0), f.score)
    return sorted((start, end, score) for (start, end), score in best.items())


def random_text(rng: random.Random, vocabulary: list[str], letters: str, most: int) -> str:
    pieces = [
        rng.choice(vocabulary)
        if rng.random() < 0.8
        else "".join(rng.choice(letters) for _ in range(rng.randint(1, 8)))
        for _ in range(rng.randint(0, most))
    ]
    return "".join(piece + rng.choice([" ", " ", ", ", "\n", "-"]) for piece in pieces)


def test_the_matcher_finds_what_the_pair_by_pair_scan_found() -> None:
    """Seeded random lists, thresholds (some landing exactly on a ratio: 80 is 4 of 5 letters
    kept) and texts over a small alphabet with look-alikes, so that exact, fuzzy and boundary
    matches all occur: one finding per matching window, scored by its best phrase, where the
    old scan gave one per matching phrase."""
    rng = random.Random(20261205)
    letters = "abcde0134"
    kinds = {"exact": 0, "fuzzy": 0, "at threshold": 0}
    for _ in range(600):
        vocabulary = [
            "".join(rng.choice(letters) for _ in range(rng.randint(1, 7))) for _ in "x" * 12
        ]
        phrases = [
            " ".join(
                rng.choice([*vocabulary, "P4ss-w0rd", "@b$"]) for _ in range(rng.randint(1, 3))
            )
            for _ in range(rng.randint(1, 8))
        ]
        phrases = [p.upper() if rng.random() < 0.2 else p for p in phrases]
        threshold = rng.choice([50, 60, 75, 80, 85.7, 88, 90, 100])
        text = random_text(rng, vocabulary, letters, 40)
        detector = BannedWordsDetector(phrases, threshold)
        found = detector.find(text)
        assert [(f.start, f.end, f.score) for f in found] == best_per_span(
            pair_by_pair(phrases, threshold, text)
        ), (phrases, threshold, text)
        for f in found:
            kinds["exact" if f.score == 1.0 else "fuzzy"] += 1
            kinds["at threshold"] += f.score * 100 == threshold
        for cut in rng.sample(range(len(text) + 1), min(5, len(text) + 1)):
            assert detector.holdback(text[:cut]) == holdback_as_it_was(phrases, text[:cut])
    assert min(kinds.values()) > 100, kinds


def holdback_as_it_was(phrases: list[str], text: str) -> int:
    keep = max(len(p.lower().translate(LEET).split()) for p in phrases if p.strip()) - 1
    if text[-1:].isalnum() or text[-1:] == "_":
        keep += 1
    if keep == 0:
        return 0
    found = list(WORD.finditer(text))
    return len(text) - found[-keep].start() if len(found) >= keep else len(text)


def test_a_phrase_listed_twice_is_one_finding() -> None:
    text = "the Password is here"
    found = BannedWordsDetector(["password", "PASSWORD", "passw0rd"]).find(text)
    assert [(f.start, f.end, f.score) for f in found] == [(4, 12, 1.0)]


def test_a_long_word_in_a_system_prompt_costs_no_quadratic_memory() -> None:
    """A stream's first holdback indexed every prefix of every system-prompt word: a caller's
    one 20,000-character word made 194 MiB (quadratic: 50,000 would be 1.2 GB)."""
    system = "one two three four five six seven eight nine " + "a" * 20_000 + " outro"
    detector = SystemPromptLeakageDetector(8)
    tracemalloc.start()
    try:
        assert detector.holdback("and then a", system) == len("a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak


def test_begins_a_word_agrees_with_every_prefix() -> None:
    rng = random.Random(5)
    # Sigma's three forms fold to one; "İ" lowers to two characters, "ß" folds to "ss".
    sigmas = [
        "\N{GREEK CAPITAL LETTER SIGMA}",
        "\N{GREEK SMALL LETTER SIGMA}",
        "\N{GREEK SMALL LETTER FINAL SIGMA}",
    ]
    letters = ["a", "b", "ab", *sigmas, "ΟΔΟΣ", "İ", "ß", "SS"]
    for _ in range(300):
        prompt = " ".join(
            "".join(rng.choice(letters) for _ in range(rng.randint(1, 3))) for _ in range(10)
        )
        index = PromptIndex(prompt, 3)
        folded = {w.casefold() for w in index.words}
        prefixes = {w[:i] for w in folded for i in range(1, len(w) + 1)}
        for _ in range(20):
            part = "".join(rng.choice(letters) for _ in range(rng.randint(1, 3))).casefold()
            assert index.begins_a_word(part) == (part in prefixes), (prompt, part)

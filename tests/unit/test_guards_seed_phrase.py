"""Wallet recovery phrases (guards/detectors/seed_phrase.py): twelve to twenty-four BIP-39
words in a row, pasted bare, comma-separated or as a numbered list, are masked whole; a tool's
published test phrase and prose are left. r16's read half had one (a user asking whether their
words are "in the right order"). The phrases here were made up from the wordlist."""

from __future__ import annotations

import pytest

from guards.detectors.secrets import SecretsDetector
from guards.detectors.seed_phrase import find_phrases, open_phrase_start, wordlist

PHRASE = "velvet orbit canyon muffin tribe wagon echo hazard lyrics pilot sauce fossil"


def secrets(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


def test_the_wordlist_is_the_pinned_one() -> None:
    assert len(wordlist()) == 2048
    assert all(w in wordlist() for w in PHRASE.split())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (f"is this in the right order? {PHRASE} - it says invalid", PHRASE),
        (f"seed: {PHRASE.replace(' ', ', ')}.", PHRASE.replace(" ", ", ") + "."),
        (
            "words:\n" + "\n".join(f"{i}. {w}" for i, w in enumerate(PHRASE.split(), 1)),
            "\n".join(f"{i}. {w}" for i, w in enumerate(PHRASE.split(), 1))[3:],
        ),
        (f"MNEMONIC={PHRASE} {PHRASE}", f"{PHRASE} {PHRASE}"),  # 24 words
    ],
)
def test_a_recovery_phrase_is_masked_whole(text: str, value: str) -> None:
    assert [v for _, v in secrets(text)] == [value]


@pytest.mark.parametrize(
    "text",
    [
        "Mnemonic: test test test test test test test test test test test junk",
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon "
        "abandon about",
        # eleven words only
        " ".join(PHRASE.split()[:11]),
        # prose: list words, broken by words off the list
        "You can also make a good plan for the year and try to find time to rest and "
        "enjoy the simple things that matter most to your family and friends.",
    ],
)
def test_test_phrases_and_prose_stay_untouched(text: str) -> None:
    assert find_phrases(text) == []


def test_a_stream_holds_a_run_of_list_words_after_a_cue_or_from_three_words() -> None:
    """After a word that announces a phrase the run is held from its first word; otherwise once
    it holds two list words prose seldom uses (prose makes runs of common list words all the
    time: "you can also make"), so without a cue a stream may release a phrase's first word."""
    cued = "my recovery phrase is velvet orb"
    assert open_phrase_start(cued) == cued.index("velvet")
    bare = "order? velvet orbit can"
    assert open_phrase_start(bare) == bare.index("velvet")  # two uncommon words: held
    assert open_phrase_start("order? velvet ") is None  # one: released
    assert open_phrase_start("One two three four five six seven ") is None  # common words
    assert open_phrase_start("the weather is nice.") is None
    numbered = "seed words: 1. velvet 2. orb"
    assert open_phrase_start(numbered) == numbered.index("velvet")


async def test_without_a_cue_a_stream_releases_at_most_a_phrases_first_word() -> None:
    from tests.unit.test_guards_streaming import stream, unary

    text = f"Is this in the right order? {PHRASE} - it says invalid"
    released, blocked, _ = await stream(list(text))
    assert not blocked
    assert "orbit" not in released and "fossil" not in released
    assert released.startswith(
        ("Is this in the right order? [PASSWORD]", "Is this in the right order? velvet [PASSWORD]")
    )
    assert "[PASSWORD]" in await unary(text)


async def test_a_phrase_one_word_a_line_streams_masked() -> None:
    from tests.unit.test_guards_streaming import stream, unary

    text = "Recovery words:\n" + PHRASE.replace(" ", "\n") + "\nthanks"
    released, blocked, _ = await stream(list(text))
    assert not blocked and released == await unary(text)
    assert "orbit" not in released


def test_a_label_of_list_words_never_completes_a_phrase() -> None:
    """Found by the run-together property test: "seed phrase:" and eleven words made thirteen
    list words in a row, and the whole text masked the label with them."""
    eleven = " ".join(PHRASE.split()[:11])
    assert find_phrases(f"my seed phrase: {eleven} fossilAKIA") == []
    text = f"my seed phrase: {PHRASE}"
    assert [text[f.start : f.end] for f in find_phrases(text)] == [PHRASE]

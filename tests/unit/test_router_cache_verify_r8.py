"""Round 8 of the cache verifier: each new forgiveness rule wins its paraphrase and still
refuses the pair written to attack it (see benchmarks/results/cache_verification.md, "Round 8
rules"). Pairs are written for these tests, not taken from any eval file.
"""

from __future__ import annotations

import pytest

from mesh.router.cache_verify import QuestionVerifier, minilm_vocabulary
from mesh.router.question_form import question_form


@pytest.fixture(scope="module")
def verifier() -> QuestionVerifier:
    vocabulary = minilm_vocabulary()
    assert vocabulary is not None
    return QuestionVerifier(vocabulary)


def same(verifier: QuestionVerifier, stored: str, asked: str) -> bool:
    """Both directions must agree."""
    forward = verifier.verify(question_form(stored), question_form(asked)).same
    backward = verifier.verify(question_form(asked), question_form(stored)).same
    assert forward == backward
    return forward


def check(
    verifier: QuestionVerifier, wins: list[tuple[str, str]], refuses: list[tuple[str, str]]
) -> None:
    for stored, asked in wins:
        assert same(verifier, stored, asked), (stored, asked)
    for stored, asked in refuses:
        assert not same(verifier, stored, asked), (stored, asked)


def test_unit_abbreviation_and_full_name(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [
            ("How far is a 5 km run?", "How far is a 5 kilometre run?"),
            ("Is 250g of pasta enough for two?", "Is 250 grams of pasta enough for two?"),
            ("What is 451 °F in Celsius?", "What is 451 degrees Fahrenheit in Celsius?"),
            ("How many km are in a league?", "How many kilometers are in a league?"),
            ("Is 60 mph fast for a moped?", "Is 60 miles per hour fast for a moped?"),
            ("What is 1 lb in kg?", "What is 1 pound in kg?"),
        ],
        [
            ("How far is a 5 km run?", "How far is a 5 mile run?"),
            ("Is 250g of pasta enough for two?", "Is 250 kg of pasta enough for two?"),
            ("What is 451 °F in Celsius?", "What is 451 degrees Celsius in Fahrenheit?"),
            ("Is 4G fast enough for streaming?", "Is 4 grams fast enough for streaming?"),
            ("How much is 5 pounds in dollars?", "How much is 5 lbs in dollars?"),
            ("What is the min function in Python?", "What is the minute function in Python?"),
            ("What does MPH stand for?", "What does miles per hour stand for?"),
            ("How do you spell km in full?", "How do you spell kilometres in full?"),
        ],
    )


def test_sentences_in_another_order(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [
            (
                "I'm moving to Oslo in March. What coat should I buy?",
                "What coat should I buy? I'm moving to Oslo in March.",
            ),
            (
                "I own a 2016 Kindle. Can it read EPUB files?",
                "Can it read EPUB files? I own a 2016 Kindle.",
            ),
        ],
        [
            (
                "Rome is in Italy. Lyon is in France. What is its population?",
                "Lyon is in France. Rome is in Italy. What is its population?",
            ),
            ("Add 4 to 6. Then divide by 2.", "Then divide by 2. Add 4 to 6."),
            ("What is 6 times 7? Add 3 to it.", "Add 3 to it. What is 6 times 7?"),
            (
                "Is it too late to apply? If so, what should I do?",
                "If so, what should I do? Is it too late to apply?",
            ),
        ],
    )


def test_subordinate_clause_moved(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [
            (
                "If my train is delayed, can I claim a refund?",
                "Can I claim a refund if my train is delayed?",
            ),
            ("When I run, why do my knees hurt?", "Why do my knees hurt when I run?"),
        ],
        [
            ("Tell me if the museum is open.", "If the museum is open, tell me."),
            ("How do I find out if I have asthma?", "If I have asthma, how do I find out?"),
            ("Remind me when the match starts.", "When the match starts, remind me."),
        ],
    )


def test_more_howto_openings(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [
            ("What's a good way to learn chess?", "How can I learn chess?"),
            ("What can I do to sleep better?", "How can I sleep better?"),
            ("Any tips on how to grow basil?", "How do I grow basil?"),
        ],
        [
            ("How could I forget my keys?", "How can I forget my keys?"),
            ("What did I do to deserve this?", "How do I deserve this?"),
        ],
    )


def test_get_a_stain_out_of_is_remove_it_from(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [("How do I get paint out of a rug?", "How can I remove paint from a rug?")],
        [
            ("How do I get text out of an image?", "How can I remove text from an image?"),
            ("How do I get out of a gym contract?", "How do I remove a gym contract?"),
        ],
    )


def test_round8_synonyms_in_context(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [
            (
                "Can you recommend a podcast about history?",
                "Can you suggest a podcast about history?",
            ),
            ("How do I make a pivot table?", "How do I create a pivot table?"),
            ("How fast does hair grow?", "How quickly does hair grow?"),
            ("What is the easiest way to learn Go?", "What is the simplest way to learn Go?"),
            ("What are the signs of flu?", "What are the signs of influenza?"),
            ("What's a quick way to chill wine?", "What's a fast way to chill wine?"),
        ],
        [
            ("What do these figures suggest?", "What do these figures recommend?"),
            ("How do they make money?", "How do they create money?"),
            ("Does black coffee break a fast?", "Does black coffee break quickly?"),
            ("What is the simplest form of 4/6?", "What is the easiest form of 4/6?"),
            ("What is stomach flu?", "What is stomach influenza?"),
            ("What does locate do in Linux?", "What does find do in Linux?"),
            ("What is a stop sign?", "What is a quit sign?"),
        ],
    )


def test_misspellings_with_a_doubled_letter_or_a_vowel(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [
            ("How do I seperate egg yolks?", "How do I separate egg yolks?"),
            ("Why is the shop closed untill noon?", "Why is the shop closed until noon?"),
            ("How do I cook brocolli?", "How do I cook broccoli?"),
        ],
        [
            ("What is ethanal used for?", "What is ethanol used for?"),
            ("Is propanal flammable?", "Is propanol flammable?"),
            ("What causes a stroke?", "What causes a strike?"),
            ("Is a diner cheaper than a dinner?", "Is a dinner cheaper than a dinner?"),
        ],
    )


def test_same_measure_as_is_symmetric(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        [("Is Oslo the same size as Dublin?", "Is Dublin the same size as Oslo?")],
        [("Is Oslo the same size as Dublin?", "Is Oslo the same size as Dubai?")],
    )


def test_sentences_are_noted_and_not_read_across() -> None:
    form = question_form("I have a cat. What should I feed her?")
    assert form.tokens == ("i", "have", "cat", "what", "should", "i", "feed", "her")
    assert form.sentences == (3,)
    assert question_form("Hello! What is it?").sentences == ()
    assert question_form("What is twenty. One more?").tokens == ("what", "is", "20", "1", "more")


def test_a_name_is_no_misspelling_of_a_lower_case_word(verifier: QuestionVerifier) -> None:
    # Found when the cache's static embedding put "dango" near "Django" (cosine 0.54; MiniLM's
    # 0.2 kept it from ever being checked): a writer who uses capitals wrote a different word.
    check(
        verifier,
        wins=[
            ("Who composed The Four Seasons?", "who compsoed the four seasosn"),
            ("how do i deactivte my facebok account", "How do I deactivate my Facebook account?"),
            ("What is the capital of Germany?", "What is the capital of Gemany?"),
        ],
        refuses=[
            ("What is Django?", "What is dango?"),
            ("Tell me about Pythn.", "Tell me about python."),
        ],
    )


def test_a_veto_is_named_only_when_asked(verifier: QuestionVerifier) -> None:
    """The cache names the first vetoed candidate's difference and skips naming the rest."""
    stored, asked = (
        question_form("Is it safe to swim here?"),
        question_form("Is it unsafe to swim here?"),
    )
    named = verifier.verify(stored, asked)
    quiet = verifier.verify(stored, asked, explain=False)
    assert not named.same and not quiet.same
    assert named.reason == "vetoed: negation or polarity differs"
    assert quiet.reason == "vetoed: content words differ"
    assert verifier.verify_turns([stored], [asked], explain=False).reason == quiet.reason


def test_negating_prefixes_are_found_as_before() -> None:
    from mesh.router.cache_verify import _negates
    from mesh.router.question_lexicon import NEGATING_PREFIXES

    words = ["safe", "unsafe", "legal", "illegal", "possible", "impossible", "able", "disable",
             "code", "decode", "use", "misuse", "stop", "nonstop", "virus", "antivirus", "un",
             "let", "inlet", "ab", "xsafe", "unun", "ununsafe"]  # fmt: skip

    def by_definition(x: str, y: str) -> bool:
        return len(x) > 2 and any(y == prefix + x for prefix in NEGATING_PREFIXES)

    assert all(_negates(x, y) == by_definition(x, y) for x in words for y in words)

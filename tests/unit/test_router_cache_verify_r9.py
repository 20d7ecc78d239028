"""Round 9 of the cache verifier: each new forgiveness rule wins its paraphrase and still
refuses the pairs written to attack it. Pairs are written for these tests, not taken from any
eval file.
"""

from __future__ import annotations

from mesh.router.cache_verify import QuestionVerifier
from mesh.router.question_form import question_form
from tests.unit.test_router_cache_verify_r8 import check, verifier

__all__ = ["verifier"]  # the shared fixture


def test_a_social_sentence_changes_no_answer(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        wins=[
            (
                "Hello and thanks in advance! How many bones are in a cat's tail?",
                "How many bones are in a cat's tail?",
            ),
            (
                "I'm planning five days in Kyoto in April with my partner. Which temples should "
                "we prioritise? Any help would be much appreciated, thank you so much!",
                "I'm planning five days in Kyoto in April with my partner. Which temples should "
                "we prioritise?",
            ),
            (
                "Hope you are well. My tomato leaves have yellow spots. What could cause this?",
                "My tomato leaves have yellow spots. What could cause this?",
            ),
        ],
        refuses=[
            # A sentence with any word outside greetings, thanks and wishes stays.
            ("Thanks! Please answer in French. What is a black hole?", "What is a black hole?"),
            (
                "I would be grateful for a short answer. Why is the sky blue?",
                "Why is the sky blue?",
            ),
            (
                "Hello, I am asking for my seven-year-old. Why is the sky blue?",
                "Why is the sky blue?",
            ),
            ("Thanks! Keep it under 50 words. What causes tides?", "What causes tides?"),
            ("Thanks for 'Hope you are well'. Translate it.", "Translate it."),  # quoted: literal
            # Social sentences alone are not a question to share.
            ("Hello, hope you are well!", "Thanks so much, much appreciated!"),
        ],
    )


def test_a_social_sentence_alone_is_kept() -> None:
    assert question_form("Hope you are well!").tokens == ("hope", "you", "are", "well")


def test_units_are_forgiven_beside_a_language_that_only_describes_a_thing(
    verifier: QuestionVerifier,
) -> None:
    check(
        verifier,
        wins=[
            (
                "How many calories are in 200 g of Greek yoghurt?",
                "How many calories are in 200 grams of Greek yoghurt?",
            ),
            (
                "Is 30 g of Chinese black tea too much in a day?",
                "Is 30 grams of Chinese black tea too much in a day?",
            ),
        ],
        refuses=[
            # Asked how it is written or said, "5 km" and "5 kilometres" are two texts.
            ("How do you write 5 km in Greek?", "How do you write 5 kilometres in Greek?"),
            ("Translate 3 kg of flour into German.", "Translate 3 kilograms of flour into German."),
            ("What does 5 km mean in French?", "What does 5 kilometres mean in French?"),
            # Another unit, or another number, is still another question.
            (
                "How much fat is in 200 g of Greek yoghurt?",
                "How much fat is in 200 oz of Greek yoghurt?",
            ),
            (
                "How much fat is in 200 g of Greek yoghurt?",
                "How much fat is in 250 grams of Greek yoghurt?",
            ),
        ],
    )


def test_contractions_typed_without_the_apostrophe(verifier: QuestionVerifier) -> None:
    check(
        verifier,
        wins=[
            ("whats the tallest mountain in africa", "What is the tallest mountain in Africa?"),
            ("why doesnt ice sink in water", "Why doesn't ice sink in water?"),
            ("im vegan, what can i eat for protein", "I'm vegan, what can I eat for protein?"),
        ],
        refuses=[
            # The "not" it holds is still a "not".
            ("why doesnt ice sink in water", "why does ice sink in water"),
            (
                "I cant swim, what should I do at the beach?",
                "I can swim, what should I do at the beach?",
            ),
        ],
    )
    # Words that are also words stay as written.
    for word in ("its", "were", "ill", "wont", "lets", "id", "well", "shell"):
        assert question_form(f"what about {word}").tokens[-1] == word


def test_a_greeting_or_thanks_that_is_the_text_worked_on_is_never_a_filler(
    verifier: QuestionVerifier,
) -> None:
    """After a content sentence ending in a colon every word is the text worked on, and in a
    prompt about a text (translate it, reply to it, judge it) no sentence is dropped whole:
    the first five pairs were served as the same question by the first round-9 rule, the
    next three by the older filler rules."""
    check(
        verifier,
        wins=[
            (
                "Write a limerick about a lazy cat.",
                "Good morning! Please write a limerick about a lazy cat for me. Thank you.",
            ),
            (
                "Hey! Quick question: how do I write a for loop in Rust? Cheers",
                "How do I write a for loop in Rust?",
            ),
        ],
        refuses=[
            (
                "Translate into French: Hope you are having a good day!",
                "Translate into French: Thank you very much for your help!",
            ),
            (
                "Reply to this email: Hi, hope you are well!",
                "Reply to this email: Thanks so much, kind regards.",
            ),
            (
                "What's wrong with this sentence? Hope you are well.",
                "What's wrong with this sentence? Thanks so much.",
            ),
            (
                "Count the words. Thanks so much for your help.",
                "Count the words. Hope you are well.",
            ),
            ("Write this in French. Thank you very much.", "Write this in French."),
            ("Translate into French: Thanks!", "Translate into French: Hello!"),
            ("Translate into German: Thank you very much.", "Translate into German."),
            ("Reply politely to: Thanks!", "Reply politely to: Cheers!"),
            ("Proofread this: Hello, hope you are well.", "Proofread this: Thanks in advance."),
            (
                "Write the following in Spanish: Good morning!",
                "Write the following in Spanish: Good evening!",
            ),
        ],
    )

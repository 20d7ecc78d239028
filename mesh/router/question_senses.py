"""Where two words of the synonym table are used in the sense that makes them synonyms, for the
cache verifier (cache_verify.py): "fix" / "repair" only where a verb stands ("a GPS fix" is
not "a GPS repair"), "film" / "movie" not before another noun ("film camera"), and since
round 8 "make" / "create" never in "make money" or "make sure", "flu" / "influenza" never
after a word that changes its sense ("stomach flu"), "easiest" / "simplest" only before a
generic head ("way", not "form"), "fast" / "quickly" only as an adverb ("how fast", "lose
weight fast"; never "break a fast").

Each check only ever refuses a synonym: a word missing here costs a cache miss.
"""

from __future__ import annotations

from mesh.router.question_lexicon import (
    COMPOUND_SYNONYMS,
    FUNCTION_WORDS,
    NOUN_TOO,
    VERB_CUES,
    VERB_SYNONYMS,
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# "make" is a light verb in these: "make money" (earn) is not "create money", nor "make sense",
# "make sure", "make friends", "make it", "make my day" (round 8).
LIGHT_MAKE_OBJECTS = _words(
    """money sense sure friends friend love up out do it way time fun peace living difference
    mistake mistakes bed call calls decision decisions progress effort point deal change
    changes noise face faces room scene fuss offer impression payment payments cash profit
    profits career trouble use war amends believe clear over off for into from me him her
    them us you my your his their our its this that these those"""
)

# Round 8: a sense that depends on the word before ("stomach flu" is not influenza).
MODIFIED_SENSES = _words("flu influenza")
# Superlatives that are one only before a generic head: "the easiest / simplest way", not
# "the simplest form of 6/8".
GENERIC_HEADS = _words("way ways method methods option options thing things recipe recipes")
HEAD_SYNONYMS = _words("easiest simplest")
# "fast" / "quickly" only as an adverb: after "how", or closing the sentence after a verb
# ("lose weight fast"); never "break a fast".
ADVERB_SYNONYMS = _words("fast quickly")
# Compound heads after which a noun or adjective synonym still stands alone ("a fast way").
_COMPOUND_HEADS = GENERIC_HEADS


def in_context(a: list[str], x: str, b: list[str], y: str) -> bool:
    """Where both words of a synonym pair are used in the sense that makes them synonyms.

    Verbs ("fix" / "repair", "delete" / "remove") only where a verb stands: first, after one
    of VERB_CUES, or last when one of them is never a noun ("when did the war begin"); "a GPS fix"
    is not "a GPS repair", and in "what does delete do in C++" the word is the subject.
    Nouns and plain adjectives that head compounds ("film", "kid", "big") only where no
    content word follows: "film camera", "kid gloves", "big data" are other things.
    """
    pair = (x, y)
    if x in ADVERB_SYNONYMS and y in ADVERB_SYNONYMS:
        return all(_adverb_at(words, w) for words, w in zip((a, b), pair, strict=True))
    if x in HEAD_SYNONYMS or y in HEAD_SYNONYMS:
        return all(_before_head(words, w) for words, w in zip((a, b), pair, strict=True))
    if x in MODIFIED_SENSES and not all(
        _unmodified(words, w) for words, w in zip((a, b), pair, strict=True)
    ):
        return False
    if "make" in pair and any(_light_make(words) for words in (a, b)):
        return False
    if x in VERB_SYNONYMS or y in VERB_SYNONYMS:
        last_ok = x not in NOUN_TOO or y not in NOUN_TOO
        return all(_verb_at(words, w, last_ok) for words, w in zip((a, b), pair, strict=True))
    if x in COMPOUND_SYNONYMS or y in COMPOUND_SYNONYMS:
        return all(_ends_phrase(words, w) for words, w in zip((a, b), pair, strict=True))
    return True


def _light_make(words: list[str]) -> bool:
    """ "make money", "make sure", "make it": not "create" (LIGHT_MAKE_OBJECTS)."""
    return any(
        w in ("make", "create") and (i + 1 == len(words) or words[i + 1] in LIGHT_MAKE_OBJECTS)
        for i, w in enumerate(words)
    )


def _adverb_at(words: list[str], word: str) -> bool:
    """ "how fast", or closing the sentence after a content word ("lose weight fast"), never
    after an article ("a fast", noted in `articles`) or "break" ("break a fast")."""
    return all(
        i > 0
        and (
            words[i - 1] == "how"
            or (
                i == len(words) - 1
                and words[i - 1] not in FUNCTION_WORDS
                and not words[i - 1].startswith("break")
                and not words[i - 1].startswith("broke")
            )
        )
        for i, w in enumerate(words)
        if w == word
    )


def _before_head(words: list[str], word: str) -> bool:
    return all(
        i + 1 < len(words) and words[i + 1] in GENERIC_HEADS
        for i, w in enumerate(words)
        if w == word
    )


def _unmodified(words: list[str], word: str) -> bool:
    return all(i == 0 or words[i - 1] in FUNCTION_WORDS for i, w in enumerate(words) if w == word)


def _verb_at(words: list[str], word: str, last_ok: bool) -> bool:
    return all(
        i == 0 or words[i - 1] in VERB_CUES or (last_ok and i == len(words) - 1)
        for i, w in enumerate(words)
        if w == word
    )


def _ends_phrase(words: list[str], word: str) -> bool:
    return all(
        i + 1 == len(words)
        or words[i + 1] in FUNCTION_WORDS
        or words[i + 1] in _COMPOUND_HEADS  # "a fast / quick way" (round 8)
        or words[i + 1][:1].isdigit()
        for i, w in enumerate(words)
        if w == word
    )

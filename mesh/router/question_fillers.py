"""Politeness around a question, for question_form.py: greetings, "could you please ...",
"thanks" at sentence edges, and asks that wrap the question ("tell me the X", "do you know who
X"), reduced to the question itself.

Kept apart from the word rewrites so each module stays one idea: this one decides what a
sentence's edges may lose; question_form.py decides how the remaining words are written.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.router.question_lexicon import (
    ARTICLES,
    EMBEDDED_ASKS,
    FILLER_AS_OBJECT,
    GREETINGS,
    HOWTO_OPENINGS,
    LEADING_FILLERS,
    MATERIAL_WITH_POINTER,
    MATERIAL_WORDS,
    MODAL_OPENERS,
    POINTERS,
    POLITE_OPENERS,
    POLITE_TRAILING,
    PREPOSITIONS,
    QUESTION_WORDS,
    REQUEST_VERBS,
    SOCIAL_MARKERS,
    SOCIAL_WORDS,
    THE_ASKS,
    TRAILING_FILLERS,
)

Phrase = tuple[str, ...]
BOUNDARY = frozenset(".!?;:")
# Between two sentences kept: question_form takes it out of the words and notes where it stood
# (QuestionForm.sentences), so that no phrase or number is read across two sentences.
SENTENCE = "\x1e"


@dataclass
class Tok:
    low: str
    raw: str
    quoted: bool = False
    initial: bool = False  # first word of a sentence


def index_phrases(phrases: tuple[Phrase, ...], at: int) -> dict[str, tuple[Phrase, ...]]:
    """Phrases by their first (at=0) or last (at=-1) word, longest first, for O(1) lookups."""
    out: dict[str, list[Phrase]] = {}
    for phrase in phrases:
        out.setdefault(phrase[at], []).append(phrase)
    return {w: tuple(sorted(ps, key=len, reverse=True)) for w, ps in out.items()}


def starts_with(tokens: list[str], i: int, phrase: Phrase) -> bool:
    return tuple(tokens[i : i + len(phrase)]) == phrase


HOWTO_INDEX = index_phrases(HOWTO_OPENINGS, 0)
_GREETINGS = index_phrases(GREETINGS, 0)
_LEADING = index_phrases(LEADING_FILLERS, 0)
_TRAILING = index_phrases(tuple(p[::-1] for p in TRAILING_FILLERS), 0)  # on reversed words
_POLITE_TRAILING = index_phrases(tuple(p[::-1] for p in POLITE_TRAILING), 0)
_THE_ASKS = index_phrases(THE_ASKS, 0)
_EMBEDDED_ASKS = index_phrases(EMBEDDED_ASKS, 0)


def strip_fillers(toks: list[Tok]) -> tuple[list[Tok], str]:
    """Drop greetings, "could you please", "thanks" at sentence edges; drop punctuation. Also
    what a stripped "can you" / "will you" asked ("can", "will", or ""): in a request they
    are all polite, but "Can you die from X?" and "Will you die from X?" differ.

    Text a prompt works on is never a filler: after a sentence with content that ends in a
    colon ("Translate into French: Thanks!", "Reply to this email: Hi, hope you are well!")
    every word is kept as written, and in a prompt about text (MATERIAL_WORDS: "What's wrong
    with this sentence? Thanks so much.") no sentence is dropped whole."""
    openers: set[str] = set()
    sentences: list[list[Tok]] = []  # each sentence trimmed (possibly to nothing)
    raws: list[list[Tok]] = []  # each sentence as written, commas aside
    sentence: list[Tok] = []
    material = False  # past a content sentence ending in ":" everything is the text worked on
    for t in [*toks, Tok(".", ".")]:
        if t.low in BOUNDARY and not t.quoted:
            raw = [w for w in sentence if not _is_comma(w)]
            words = raw if material else _trim(sentence, openers)
            if raw:
                sentences.append(words)
                raws.append(raw)
            material = material or (t.low == ":" and bool(words))
            sentence = []
        else:
            sentence.append(t)
    if _about_text(sentences, raws):  # a sentence trimmed to nothing may be the text: kept
        kept = [words or raw for words, raw in zip(sentences, raws, strict=True)]
    else:
        trimmed = [words for words in sentences if words]
        kept = [s for s in trimmed if not _social(s)] or trimmed
    out: list[Tok] = []
    for words in kept:
        if out:
            out.append(Tok(SENTENCE, SENTENCE, initial=True))  # see question_form
        words[0].initial = not out or words[0].initial
        out += words
    return out, " ".join(sorted(openers))


def _about_text(sentences: list[list[Tok]], raws: list[list[Tok]]) -> bool:
    """Whether the prompt works on a text (MATERIAL_WORDS, or "write" / "words" beside a
    pointer such as "this" or "the following" in a sentence that is not a social one)."""
    lows = {w.low for raw in raws for w in raw if not w.quoted}
    if not lows.isdisjoint(MATERIAL_WORDS):
        return True
    if lows.isdisjoint(MATERIAL_WITH_POINTER):
        return False
    pointing = (
        w.low
        for words, raw in zip(sentences, raws, strict=True)
        if words and not _social(words)
        for w in raw
        if not w.quoted
    )
    return any(low in POINTERS for low in pointing)


def _social(words: list[Tok]) -> bool:
    """A sentence of greetings, thanks and good wishes only (SOCIAL_WORDS): no answer depends
    on it. A quoted word or any other word keeps the sentence."""
    lows = {w.low for w in words}
    return (
        not any(w.quoted for w in words)
        and lows <= SOCIAL_WORDS
        and not lows.isdisjoint(SOCIAL_MARKERS)
    )


def _trim(sentence: list[Tok], openers: set[str]) -> list[Tok]:
    words = list(sentence)
    polite = False
    changed = True
    while changed and words:
        changed = False
        n = _leading_filler(words)
        if n:
            stripped = tuple(w.low for w in words[:n] if not _is_comma(w))
            if stripped in MODAL_OPENERS:
                openers.add(_modality(stripped, words[n:]))
            polite = polite or any(w in POLITE_OPENERS for w in stripped)
            words, changed = words[n:], True
        n = _trailing_filler(words, polite)
        if n:
            polite = polite or any(w.low in POLITE_OPENERS for w in words[-n:])
            words, changed = words[: len(words) - n], True
    return _the_ask([w for w in words if not _is_comma(w)])


def _modality(opener: Phrase, rest: list[Tok]) -> str:
    """What a stripped "can you" / "could you" / "will you" / "would you" asked. Before a request
    ("Could you explain X?") "could" is "can"; before anything else it is the past or a
    condition: "Could you smoke in pubs?" is not "Can you smoke in pubs?"."""
    modality = MODAL_OPENERS[opener]
    if opener[0] == "could" and _first_word(rest) not in REQUEST_VERBS:
        return "could"
    return modality


def _the_ask(words: list[Tok]) -> list[Tok]:
    """ "Tell me the X" / "What are the X" -> "what is the X", "Tell me who X" -> "who X": one
    wording of one request."""
    lows = [w.low for w in words if w.low not in ARTICLES]
    if any(starts_with(lows, 0, p) for p in HOWTO_INDEX.get(lows[0] if lows else "", ())):
        return words  # "what are the steps to ..." is a how-to opening
    for phrase in _EMBEDDED_ASKS.get(_first_word(words), ()):
        n, _ = _match(words, phrase)
        if n and n < len(words) and words[n].low in QUESTION_WORDS and not words[n].quoted:
            first = words[n]
            return [Tok(first.low, first.raw, initial=words[0].initial), *words[n + 1 :]]
    for phrase in _THE_ASKS.get(_first_word(words), ()):
        n, _ = _match(words, phrase)
        if n and n < len(words) and words[n].low == "the" and not words[n].quoted:
            initial = words[0].initial
            return [Tok("what", "what", initial=initial), Tok("is", "is"), *words[n:]]
    return words


def _leading_filler(words: list[Tok]) -> int:
    """Tokens to strip from the start: a greeting set off by a comma or standing alone, or a
    request opener that is not followed by a preposition ("Please in French?" keeps it)."""
    first = _first_word(words)
    for phrase in _GREETINGS.get(first, ()):
        n, comma = _match(words, phrase)
        if n and (comma or n == len(words)):
            return n
    for phrase in _LEADING.get(first, ()):
        n, _ = _match(words, phrase)
        if n and (n == len(words) or words[n].low not in PREPOSITIONS):
            return n
    return 0


def _trailing_filler(words: list[Tok], polite: bool) -> int:
    """Tokens to strip from the end, unless the filler is the object ("say thank you") or a
    title: capitalised inside the sentence and not set off by a comma ("Who sang Thank You?")."""
    backwards = words[::-1]
    phrases = _TRAILING.get(_first_word(backwards), ())
    if polite:
        phrases += _POLITE_TRAILING.get(_first_word(backwards), ())
    for phrase in phrases:
        n, comma = _match(backwards, phrase)
        if not n:
            continue
        if comma or n == len(words):
            return n
        titled = any(w.raw[:1].isupper() and not w.raw.isupper() for w in words[-n:])
        # Not set off by a comma, a "thanks" / "cheers" may be what the sentence is about
        # ("When should I use cheers?"); only a request already softened ends in one.
        thanks = not any(w.low in POLITE_OPENERS for w in words[-n:])
        if not titled and words[-n - 1].low not in FILLER_AS_OBJECT and (polite or not thanks):
            return n
    return 0


def _match(words: list[Tok], phrase: Phrase) -> tuple[int, bool]:
    """Tokens `phrase` covers at the start of `words` (commas inside and after it included),
    and whether a comma followed it; (0, False) if it does not match."""
    i = 0
    for part in phrase:
        while i < len(words) and _is_comma(words[i]):
            i += 1
        if i >= len(words) or words[i].quoted or words[i].low != part:
            return 0, False
        i += 1
    end = i
    while i < len(words) and _is_comma(words[i]):
        i += 1
    return i, i > end


def _is_comma(t: Tok) -> bool:
    return t.low == "," and not t.quoted


def _first_word(words: list[Tok]) -> str:
    return next((w.low for w in words if not _is_comma(w)), "")

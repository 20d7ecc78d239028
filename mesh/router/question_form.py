"""A prompt reduced to the words that decide its answer, for the cache's question comparison.

MiniLM scores "Is Python faster than Java?" and the reverse at cosine 0.993, so a semantic hit
is only a candidate; the verifier (cache_verify.py) then compares two prompts word by word.
This module gives it comparable words: lowercase, contractions expanded ("can't" -> "can not"),
greetings and "could you please ..." stripped from sentence edges, articles dropped, "how do
I" / "what are the steps to" made one token, numbers as digits ("seven", "VII" and "7" alike),
quoted text marked literal. It never drops a word that can change an answer: negators, numbers,
prepositions, pronouns and every content word stay, in order.

Pure Python, ~50 us for a one-line prompt; computed once per key, off the event loop.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mesh.router.question_lexicon import (
    ARTICLES,
    COUNTED_NOUNS,
    EMBEDDED_ASKS,
    FILLER_AS_OBJECT,
    GREETINGS,
    HOWTO_OPENINGS,
    LEADING_FILLERS,
    MULTIPLIERS,
    NUMBER_WORDS,
    ORDINAL_WORDS,
    PHRASES,
    POLITE_OPENERS,
    POLITE_TRAILING,
    PREPOSITIONS,
    QUANTITY_NOUNS,
    QUESTION_WORDS,
    TENS,
    THE_ASKS,
    TRAILING_FILLERS,
)

QUOTE = '"'  # prefix of a token from quoted text: compared literally, never reordered
HOWTO = "howto"

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# 'single' or "double" quoted spans; an apostrophe inside a word ("isn't") does not open one.
_QUOTED = re.compile(
    r"""(?<![\w'])'((?:[^'\n]|(?<=\w)'(?=\w)){1,300}?)'(?!\w)|"([^"\n]{1,300}?)\""""
)
_TOKEN = re.compile(r"[^\W_]+(?:['.][^\W_]+)*[+#]*|[+\-*/\u00d7\u00f7=<>%$£€¥^&@°]|[.!?;:]|,")
_BOUNDARY = frozenset(".!?;:")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
# Regnal and sequel numerals only (1 to 89): "DC", "CD", "MD" and "MIX" are words.
_ROMAN = re.compile(r"^(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50}
_DIGITS = re.compile(r"\d+(?:\.\d+)*")
_CONTRACTIONS = [
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        (r"\bwon't\b", "will not"),
        (r"\bcan't\b", "can not"),
        (r"\bshan't\b", "shall not"),
        (r"\bain't\b", "is not"),
        (r"\blet's\b", "let us"),
        (r"\b(\w+)n't\b", r"\1 not"),
        (r"\b(\w+)'re\b", r"\1 are"),
        (r"\b(\w+)'ve\b", r"\1 have"),
        (r"\b(\w+)'ll\b", r"\1 will"),
        (r"\b(i|you|he|she|we|they|it)'d\b", r"\1 would"),
        (r"\b(i)'m\b", r"\1 am"),
        (r"\b(who|what|where|when|why|how|there|here|that|it|he|she|this)'s\b", r"\1 is"),
    )
]
Phrase = tuple[str, ...]


def _index(phrases: tuple[Phrase, ...], at: int) -> dict[str, tuple[Phrase, ...]]:
    """Phrases by their first (at=0) or last (at=-1) word, longest first, for O(1) lookups."""
    out: dict[str, list[Phrase]] = {}
    for phrase in phrases:
        out.setdefault(phrase[at], []).append(phrase)
    return {w: tuple(sorted(ps, key=len, reverse=True)) for w, ps in out.items()}


_GREETINGS = _index(GREETINGS, 0)
_LEADING = _index(LEADING_FILLERS, 0)
_TRAILING = _index(tuple(p[::-1] for p in TRAILING_FILLERS), 0)  # matched on reversed words
_POLITE_TRAILING = _index(tuple(p[::-1] for p in POLITE_TRAILING), 0)
_HOWTO = _index(HOWTO_OPENINGS, 0)
_THE_ASKS = _index(THE_ASKS, 0)
_EMBEDDED_ASKS = _index(EMBEDDED_ASKS, 0)
_PHRASES = _index(tuple(PHRASES), 0)
_TWO_WORD_TENS = {t + u: TENS[t] + NUMBER_WORDS[u] for t in TENS for u in list(NUMBER_WORDS)[1:10]}


@dataclass(frozen=True)
class QuestionForm:
    """The canonical words of one message, and the numbers in it (part of the cache scope)."""

    tokens: tuple[str, ...]
    numbers: tuple[str, ...]

    @property
    def key(self) -> str:
        return " ".join(self.tokens)


@dataclass
class _Tok:
    low: str
    raw: str
    quoted: bool = False
    initial: bool = False  # first word of a sentence


def question_form(text: str) -> QuestionForm:
    """Canonical words of `text` (see the module docstring for what is normalised)."""
    toks = _tokenise(text)
    shouting = not any(c.islower() for c in text)
    _numerals(toks, shouting)
    words = _strip_fillers(toks)
    words = _quantities(words)
    words = [
        t
        for t in words
        if t.quoted or t.low not in ARTICLES or (t.raw == "A" and not t.initial and not shouting)
    ]
    tokens = _number_words(_phrases([QUOTE + t.low if t.quoted else t.low for t in words]))
    numbers = sorted(n for t in tokens for n in _DIGITS.findall(t))
    return QuestionForm(tuple(tokens), tuple(numbers))


# -- tokens --------------------------------------------------------------------------------
def _tokenise(text: str) -> list[_Tok]:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = _THOUSANDS.sub("", _WORD_HYPHEN.sub("", text))
    out: list[_Tok] = []
    pos = 0
    for m in _QUOTED.finditer(text):
        out += _plain(text[pos : m.start()])
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        words = [w for w in _TOKEN.findall(inner) if w not in _BOUNDARY and w != ","]
        out += [_Tok(w.lower(), w, quoted=True) for w in words] or [_Tok("", "", quoted=True)]
        pos = m.end()
    out += _plain(text[pos:])
    initial = True
    for t in out:
        t.initial = initial and not t.quoted
        initial = t.low in _BOUNDARY
    return out


def _plain(segment: str) -> list[_Tok]:
    if "'" in segment:
        for pattern, repl in _CONTRACTIONS:
            segment = pattern.sub(repl, segment)
    return [_Tok(w.lower(), w) for w in _TOKEN.findall(segment)]


def _numerals(toks: list[_Tok], shouting: bool) -> None:
    """Digit ordinals to words ("3rd" -> "third"); regnal Roman numerals to digits."""
    for i, t in enumerate(toks):
        if t.quoted:
            continue
        m = _ORDINAL.match(t.low)
        if m and int(m.group(1)) < len(ORDINAL_WORDS):
            t.low = ORDINAL_WORDS[int(m.group(1))]
        elif not shouting and _is_roman(toks, i):
            t.low = str(_roman_value(t.raw))


def _is_roman(toks: list[_Tok], i: int) -> bool:
    """After a name only: "Henry VIII", "World War I", "Super Bowl LV"; never "Can I"."""
    raw = toks[i].raw
    prev = toks[i - 1] if i > 0 else None
    if not raw or not raw.isupper() or not _ROMAN.match(raw) or prev is None:
        return False
    if not prev.raw.istitle() or prev.quoted:
        return False
    if len(raw) > 1:
        return True
    if raw not in "IVX" or prev.initial:
        return False
    return raw != "I" or (i > 1 and toks[i - 2].raw.istitle())


def _roman_value(raw: str) -> int:
    total = 0
    for a, b in zip(raw, raw[1:] + " ", strict=True):
        value = _ROMAN_VALUES[a]
        total += -value if b != " " and _ROMAN_VALUES[b] > value else value
    return total


# -- fillers -------------------------------------------------------------------------------
def _strip_fillers(toks: list[_Tok]) -> list[_Tok]:
    """Drop greetings, "could you please", "thanks" at sentence edges; drop punctuation."""
    out: list[_Tok] = []
    sentence: list[_Tok] = []
    for t in [*toks, _Tok(".", ".")]:
        if t.low in _BOUNDARY and not t.quoted:
            words = _trim(sentence)
            if words and not out:
                words[0].initial = True
            out += words
            sentence = []
        else:
            sentence.append(t)
    return out


def _trim(sentence: list[_Tok]) -> list[_Tok]:
    words = list(sentence)
    polite = False
    changed = True
    while changed and words:
        changed = False
        n = _leading_filler(words)
        if n:
            polite = polite or any(w.low in POLITE_OPENERS for w in words[:n])
            words, changed = words[n:], True
        n = _trailing_filler(words, polite)
        if n:
            polite = polite or any(w.low in POLITE_OPENERS for w in words[-n:])
            words, changed = words[: len(words) - n], True
    return _the_ask([w for w in words if not _is_comma(w)])


def _the_ask(words: list[_Tok]) -> list[_Tok]:
    """ "Tell me the X" / "What are the X" -> "what is the X", "Tell me who X" -> "who X": one
    wording of one request."""
    lows = [w.low for w in words if w.low not in ARTICLES]
    if any(_at(lows, 0, p) for p in _HOWTO.get(lows[0] if lows else "", ())):
        return words  # "what are the steps to ..." is a how-to opening
    for phrase in _EMBEDDED_ASKS.get(_first_word(words), ()):
        n, _ = _match(words, phrase)
        if n and n < len(words) and words[n].low in QUESTION_WORDS and not words[n].quoted:
            first = words[n]
            return [_Tok(first.low, first.raw, initial=words[0].initial), *words[n + 1 :]]
    for phrase in _THE_ASKS.get(_first_word(words), ()):
        n, _ = _match(words, phrase)
        if n and n < len(words) and words[n].low == "the" and not words[n].quoted:
            initial = words[0].initial
            return [_Tok("what", "what", initial=initial), _Tok("is", "is"), *words[n:]]
    return words


def _leading_filler(words: list[_Tok]) -> int:
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


def _trailing_filler(words: list[_Tok], polite: bool) -> int:
    """Tokens to strip from the end, unless the filler is the object ("say thank you")."""
    backwards = words[::-1]
    phrases = _TRAILING.get(_first_word(backwards), ())
    if polite:
        phrases += _POLITE_TRAILING.get(_first_word(backwards), ())
    for phrase in phrases:
        n, comma = _match(backwards, phrase)
        if n and (comma or n == len(words) or words[-n - 1].low not in FILLER_AS_OBJECT):
            return n
    return 0


def _match(words: list[_Tok], phrase: tuple[str, ...]) -> tuple[int, bool]:
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


def _is_comma(t: _Tok) -> bool:
    return t.low == "," and not t.quoted


def _first_word(words: list[_Tok]) -> str:
    return next((w.low for w in words if not _is_comma(w)), "")


# -- rewrites ------------------------------------------------------------------------------
def _quantities(words: list[_Tok]) -> list[_Tok]:
    """ "a fortnight" -> "14 days", "a decade" -> "10 years", "a dozen" -> "12", "a hundred" ->
    "100"."""
    out: list[_Tok] = []
    for t in words:
        after_one = bool(out) and out[-1].low in ("a", "one") and not out[-1].quoted
        if not t.quoted and t.low in MULTIPLIERS and after_one:
            out[-1] = _Tok(str(MULTIPLIERS[t.low]), t.raw)
            continue
        counted = t.low in COUNTED_NOUNS and after_one
        if not t.quoted and (t.low in QUANTITY_NOUNS or counted):
            if out and out[-1].low in ("a", "an", "one") and not out[-1].quoted:
                out.pop()
            parts = QUANTITY_NOUNS.get(t.low) or COUNTED_NOUNS[t.low]
            out += [_Tok(p, p) for p in parts]
        else:
            out.append(t)
    return out


def _phrases(tokens: list[str]) -> list[str]:
    """How-to openings to one token; fixed phrases to their canonical form."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i]
        phrase = next((p for p in _HOWTO.get(word, ()) if _at(tokens, i, p)), None)
        if phrase is not None:
            out.append(HOWTO)
            i += len(phrase)
            continue
        phrase = next((p for p in _PHRASES.get(word, ()) if _at(tokens, i, p)), None)
        if phrase is not None:
            out += PHRASES[phrase]
            i += len(phrase)
            continue
        out.append(word)
        i += 1
    return out


def _at(tokens: list[str], i: int, phrase: Phrase) -> bool:
    return tuple(tokens[i : i + len(phrase)]) == phrase


def _number_words(tokens: list[str]) -> list[str]:
    """ "seven" -> "7", "twenty one" -> "21", "a hundred" -> "100" (quoted text untouched)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        value, used = _number_at(tokens, i)
        if used:
            out.append(str(value))
            i += used
        else:
            out.append(tokens[i])
            i += 1
    return out


def _number_at(tokens: list[str], i: int) -> tuple[int, int]:
    word = tokens[i]
    if word in MULTIPLIERS and (i == 0 or tokens[i - 1] not in NUMBER_WORDS):
        return 0, 0  # "hundreds of", or a bare "thousand" we cannot read safely
    if word in NUMBER_WORDS:
        value, used = NUMBER_WORDS[word], 1
    elif word in _TWO_WORD_TENS:
        value, used = _TWO_WORD_TENS[word], 1
    elif word in TENS:
        value, used = TENS[word], 1
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if nxt in NUMBER_WORDS and 0 < NUMBER_WORDS[nxt] < 10:
            value, used = value + NUMBER_WORDS[nxt], 2
    else:
        return 0, 0
    nxt = tokens[i + used] if i + used < len(tokens) else ""
    if nxt in MULTIPLIERS:
        value, used = value * MULTIPLIERS[nxt], used + 1
    return value, used

"""A prompt reduced to the words that decide its answer, for the cache's question comparison.

MiniLM scores "Is Python faster than Java?" and the reverse at cosine 0.993, so a semantic hit
is only a candidate; the verifier (cache_verify.py) then compares two prompts word by word.
This module gives it comparable words: lowercase, contractions expanded ("can't" -> "can not"),
greetings and "could you please ..." stripped from sentence edges, articles dropped, "how do
I" / "what are the steps to" made one token, numbers as digits ("seven", "VII" and "7" alike),
quoted text marked literal (its punctuation included). It never drops a word that can change an
answer: negators, numbers, prepositions, pronouns and every content word stay, in order. What
the dropped words still say travels beside the tokens: which article stood before which word,
whether a stripped "can you" / "could you" / "will you" asked, which words were written in
capitals or capitalised inside a sentence; and a mixed-case unit symbol keeps its case ("Mb" /
"MB").

Pure Python, ~50 us for a one-line prompt; computed once per key, off the event loop.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mesh.router.question_fillers import (
    BOUNDARY,
    HOWTO_INDEX,
    SENTENCE,
    Tok,
    index_phrases,
    starts_with,
    strip_fillers,
)
from mesh.router.question_lexicon import (
    ARTICLES,
    COUNTED_NOUNS,
    GET_OUT_OF,
    MULTIPLIERS,
    NUMBER_WORDS,
    ORDINAL_WORDS,
    PHRASES,
    QUANTITY_NOUNS,
    STAINS,
    TENS,
)
from mesh.router.question_units import unit_tokens

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
# Contractions typed without the apostrophe ("whats the capital", "i dont know"): only words
# that are nothing else ("its", "were", "ill", "wont", "lets", "id" are words, left alone).
_BARE_CONTRACTIONS = {
    w: tuple(expanded.split())
    for w, expanded in (
        ("whats", "what is"),
        ("thats", "that is"),
        ("hows", "how is"),
        ("wheres", "where is"),
        ("whos", "who is"),
        ("dont", "do not"),
        ("doesnt", "does not"),
        ("didnt", "did not"),
        ("isnt", "is not"),
        ("arent", "are not"),
        ("wasnt", "was not"),
        ("werent", "were not"),
        ("havent", "have not"),
        ("hasnt", "has not"),
        ("hadnt", "had not"),
        ("shouldnt", "should not"),
        ("wouldnt", "would not"),
        ("couldnt", "could not"),
        ("mustnt", "must not"),
        ("cant", "can not"),
        ("im", "i am"),
        ("ive", "i have"),
        ("youre", "you are"),
        ("theyre", "they are"),
    )
}
_PHRASES = index_phrases(tuple(PHRASES), 0)
_TWO_WORD_TENS = {t + u: TENS[t] + NUMBER_WORDS[u] for t in TENS for u in list(NUMBER_WORDS)[1:10]}


@dataclass(frozen=True)
class QuestionForm:
    """The canonical words of one message, and the numbers in it (part of the cache scope)."""

    tokens: tuple[str, ...]
    numbers: tuple[str, ...]
    # Dropped articles with the word after them ("a", or "the" before a name): "the Matrix"
    # is not "a matrix" (see _articles).
    articles: tuple[tuple[str, str], ...] = ()
    # What a stripped "can you" / "will you" asked: "can", "will", both, or "".
    opener: str = ""
    # Words of 3+ letters written in capitals in mixed-case text (SELECT, NASA): compared
    # literally, never as a synonym or a typo.
    names: frozenset[str] = frozenset()
    # Words written with a capital inside a sentence ("Big Ben", "the Doctor", "in Excel"):
    # names, never a synonym (they may still be misspelt); empty in title-case or shouted
    # text.
    capitalised: frozenset[str] = frozenset()
    # Where each sentence after the first starts in `tokens` ("I have a cat. What should I
    # feed her?": (4,)): sentences may be given in another order (question_order).
    sentences: tuple[int, ...] = ()
    # The writer uses capitals (not all lower case, not shouted): a word then written in lower
    # case is not a name, so it is no misspelling of one ("What is dango?" / "... Django?").
    cased: bool = False

    @property
    def key(self) -> str:
        """Equal keys ask the same question (the verifier agrees), so they may share an entry
        without it. "can" (the usual polite request) is left out so that "Could you please
        describe X?" still shares "Describe X."'s entry; a "will" is marked, so "Will you X?"
        never shares "Can you X?"'s."""
        opener = "" if self.opener == "can" else self.opener
        marks = [opener, *(f"{a}:{w}" for a, w in self.articles)]
        return " ".join(self.tokens) + ("\x1f" + " ".join(marks) if any(marks) else "")


def question_form(text: str) -> QuestionForm:
    """Canonical words of `text` (see the module docstring for what is normalised)."""
    toks = _tokenise(text)
    shouting = not any(c.islower() for c in text)
    _numerals(toks, shouting)
    _unit_symbols(toks)
    words, opener = strip_fillers(unit_tokens(toks))
    words, articles = _articles(_quantities(words), shouting)
    marked = _number_words(
        _get_out_of(_phrases([QUOTE + t.low if t.quoted else t.low for t in words]))
    )
    tokens = [t for t in marked if t != SENTENCE]
    starts = tuple(i - n for n, i in enumerate(i for i, t in enumerate(marked) if t == SENTENCE))
    numbers = sorted(n for t in tokens for n in _DIGITS.findall(t))
    names = frozenset(
        t.low
        for t in words
        if not shouting and not t.quoted and len(t.raw) > 2 and t.raw.isalpha() and t.raw.isupper()
    )
    return QuestionForm(
        tuple(tokens),
        tuple(numbers),
        articles,
        opener,
        names,
        _capitalised(words, shouting),
        starts,
        not shouting and any(c.isupper() for c in text),
    )


def _capitalised(words: list[Tok], shouting: bool) -> frozenset[str]:
    """Words capitalised inside a sentence; none when most words are (a title-case prompt)."""
    inner = [t for t in words if not t.quoted and not t.initial and t.raw[:1].isalpha()]
    # Capitals throughout are another mark ("OK", "TV"; NASA is one of `names`).
    caps = [t for t in inner if t.raw[:1].isupper() and not t.raw.isupper()]
    if shouting or 2 * len(caps) > len(inner) >= 4:
        return frozenset()
    return frozenset(t.low for t in caps)


# -- tokens --------------------------------------------------------------------------------
def _tokenise(text: str) -> list[Tok]:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = _THOUSANDS.sub("", _WORD_HYPHEN.sub("", text))
    out: list[Tok] = []
    pos = 0
    for m in _QUOTED.finditer(text):
        out += _plain(text[pos : m.start()])
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        # Punctuation inside a quotation is part of it ("Let's eat, Grandma"); its closing
        # full stop is not.
        words = _TOKEN.findall(inner)
        while words and (words[-1] in BOUNDARY or words[-1] == ","):
            words.pop()
        out += [Tok(w.lower(), w, quoted=True) for w in words] or [Tok("", "", quoted=True)]
        pos = m.end()
    out += _plain(text[pos:])
    initial = True
    for t in out:
        t.initial = initial and not t.quoted
        initial = t.low in BOUNDARY
    return out


def _plain(segment: str) -> list[Tok]:
    if "'" in segment:
        for pattern, repl in _CONTRACTIONS:
            segment = pattern.sub(repl, segment)
    out: list[Tok] = []
    for w in _TOKEN.findall(segment):
        low = w.lower()
        bare = _BARE_CONTRACTIONS.get(low)
        if bare is None:
            out.append(Tok(low, w))
        else:  # the first word keeps the capital ("Whats" -> "What is")
            out += [Tok(p, w[0] + p[1:] if not i else p) for i, p in enumerate(bare)]
    return out


def _numerals(toks: list[Tok], shouting: bool) -> None:
    """Digit ordinals to words ("3rd" -> "third"); regnal Roman numerals to digits."""
    for i, t in enumerate(toks):
        if t.quoted:
            continue
        m = _ORDINAL.match(t.low)
        if m and int(m.group(1)) < len(ORDINAL_WORDS):
            t.low = ORDINAL_WORDS[int(m.group(1))]
        elif not shouting and _is_roman(toks, i):
            t.low = str(_roman_value(t.raw))


def _is_roman(toks: list[Tok], i: int) -> bool:
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


def _unit_symbols(toks: list[Tok]) -> None:
    """A unit symbol written in mixed case keeps its case: "50 Mb/s" is not "50 MB/s", "5 mW"
    is not "5 MW" (an all-lowercase or all-capitals one is read case-blind, as before)."""
    for i, t in enumerate(toks):
        letters = t.raw.lstrip("0123456789")
        if t.quoted or not 1 < len(letters) <= 3 or not letters.isalpha():
            continue
        if letters.islower() or letters.isupper():
            continue
        after_number = letters != t.raw or (i > 0 and toks[i - 1].raw[-1:].isdigit())
        if after_number:
            t.low = t.raw


def _articles(words: list[Tok], shouting: bool) -> tuple[list[Tok], tuple[tuple[str, str], ...]]:
    """Drop articles, not letters ("vitamin A", "hepatitis a"). Note "a" / "an" with the word
    after it, and "the" before a capitalised word (a name), so the verifier can tell "the Fed"
    from "a fed" and "vitamin a do" from "a vitamin do". A generic "the" ("how does the heart
    work") is not noted: it asks what "a heart" asks."""
    kept: list[Tok] = []
    notes: list[tuple[str, str]] = []
    pending = ""
    for i, t in enumerate(words):
        # A capital "A" inside a sentence, or an article with no word after it in its sentence
        # ("what causes hepatitis a"), is a letter.
        letter = t.raw == "A" and not t.initial and not shouting
        last = i + 1 == len(words) or words[i + 1].initial
        if not t.quoted and t.low in ARTICLES and not letter and not last:
            pending = "the" if t.low == "the" else "a"
            continue
        named = t.raw[:1].isupper() and not shouting
        if pending and not t.quoted and not t.initial and (pending == "a" or named):
            notes.append((pending, t.low))
        pending = ""
        kept.append(t)
    return kept, tuple(notes)


# -- rewrites ------------------------------------------------------------------------------
def _quantities(words: list[Tok]) -> list[Tok]:
    """ "a fortnight" -> "14 days", "a decade" -> "10 years", "a dozen" -> "12", "a hundred" ->
    "100"."""
    out: list[Tok] = []
    for t in words:
        after_one = bool(out) and out[-1].low in ("a", "one") and not out[-1].quoted
        if not t.quoted and t.low in MULTIPLIERS and after_one:
            out[-1] = Tok(str(MULTIPLIERS[t.low]), t.raw)
            continue
        counted = t.low in COUNTED_NOUNS and after_one
        if not t.quoted and (t.low in QUANTITY_NOUNS or counted):
            if out and out[-1].low in ("a", "an", "one") and not out[-1].quoted:
                out.pop()
            parts = QUANTITY_NOUNS.get(t.low) or COUNTED_NOUNS[t.low]
            out += [Tok(p, p) for p in parts]
        else:
            out.append(t)
    return out


def _phrases(tokens: list[str]) -> list[str]:
    """How-to openings to one token; fixed phrases to their canonical form."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i]
        phrase = next((p for p in HOWTO_INDEX.get(word, ()) if starts_with(tokens, i, p)), None)
        if phrase is not None:
            out.append(HOWTO)
            i += len(phrase)
            continue
        phrase = next((p for p in _PHRASES.get(word, ()) if starts_with(tokens, i, p)), None)
        if phrase is not None:
            out += PHRASES[phrase]
            i += len(phrase)
            continue
        out.append(word)
        i += 1
    return out


def _get_out_of(tokens: list[str]) -> list[str]:
    """ "how do I get wax out of a carpet" -> "how do I remove wax from a carpet": after a
    how-to opening or "to", "get" and one to four words ending in a stain or the like before
    "out of" (not "get the most out of", "get out of a contract", "get text out of a PDF")."""
    i = 0
    while i < len(tokens):
        if tokens[i] == GET_OUT_OF[0] and i and tokens[i - 1] in (HOWTO, "to"):
            end = next(
                (
                    j
                    for j in range(i + 2, min(i + 6, len(tokens) - 1))
                    if tokens[j : j + 2] == ["out", "of"]
                ),
                None,
            )
            middle = tokens[i + 1 : end] if end is not None else []
            if end is not None and middle[-1] in STAINS and SENTENCE not in middle:
                tokens = [*tokens[:i], "remove", *middle, "from", *tokens[end + 2 :]]
        i += 1
    return tokens


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

"""Does a cached prompt ask the same question as this one? The check behind every semantic hit.

Embedding similarity only proposes candidates: MiniLM puts "Is it safe ..." and "Is it unsafe
...", "Is Python faster than Java?" and the reverse, "feet in an inch" and "inches in a foot"
at cosine 0.99. So a candidate is served only if its words, reduced by question_form.py, can be
aligned with the request's words one for one, each difference explained:

- the same word; a listed synonym in the sense that makes it one ("fix" / "repair" only where
  a verb stands, "film" / "movie" not before another noun: "film camera"; never a word
  capitalised inside a sentence: "Big Ben"); a typo (one internal edit between a word nobody
  knows and one MiniLM's vocabulary or the English dictionary (SCOWL, english_words.py) knows:
  "captial" / "capital", but not "bream" / "beam"; a vowel for a vowel only inside a long
  word, never in a prompt about words or in another language); a word in capitals (SELECT,
  NASA) is neither;
- (round 8) a unit's abbreviation and its name where the abbreviation stands as a unit ("5
  km" / "5 kilometres", question_units.py); a misspelling with a letter doubled in the wrong
  place ("untill", "brocolli") or a vowel for a vowel inside a long word ("seperate"), the
  misspelt side still a word no dictionary knows;
- (round 9) a unit's abbreviation and its name also where a language names a thing ("Greek
  yoghurt"), not only where typos are forgiven; never in a prompt about wording or
  translation ("what does 5 km mean", "say it in Greek");
- (round 9) a whole sentence of greetings, thanks and good wishes (question_fillers.py,
  SOCIAL_WORDS) dropped when another sentence remains, never in a prompt that works on a text
  (a greeting may be the text: "Translate into French: Thanks!"; after a content sentence
  ending in a colon no word is a filler);
- (round 9) a contraction typed without its apostrophe ("whats", "dont", "im"), where the
  bare form is no other word (question_form.py: "its", "were", "wont" stay as written);
- in the same order, except the reorderings of question_order.py: a phrase moved between the
  start and the end ("In Excel, how do I ..." / "How do I ... in Excel?"), the two sides of a
  plain "and" / "or" or of a symmetric relation exchanged, "not" after the subject, and
  (round 8) a subordinate clause moved or whole sentences in another order.

Anything else vetoes the hit: a word on one side only ("not", "without", "un-"), a different
number, date, version, entity, scope word, language, format or verb, a different inflection
("woman" / "women"), the same words in another order (swapped roles, conversion direction), a
different article before a name or a letter ("the Matrix" / "a matrix", "vitamin a do" / "a
vitamin do"), or a stripped "can you" against a stripped "will you" or a past "could you".
Default-deny: a rule missing here costs a cache miss, never a wrong answer.

Verdicts name categories, never the prompt's words: they go on spans and on RouteInfo.
Cost: tens of microseconds per candidate, pure Python; runs in the cache's lookup thread.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from mesh.router.english_words import english_words
from mesh.router.question_form import QUOTE, QuestionForm
from mesh.router.question_lexicon import (
    LANGUAGE_NAMES,
    NEGATING_PREFIXES,
    NEGATORS,
    SYNONYM_GROUPS,
    WORD_QUESTIONS,
)
from mesh.router.question_order import reordering, sentences_reordered
from mesh.router.question_senses import in_context
from mesh.router.question_units import as_unit, same_unit

log = logging.getLogger(__name__)
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_VOWELS = frozenset("aeiouy")
_KEY_NEIGHBOURS = {
    c: "".join(
        other[k]
        for other in _ROWS[max(r - 1, 0) : r + 2]
        for k in range(max(i - 1, 0), min(i + 2, len(other)))
        if other[k] != c
    )
    for r, row in enumerate(_ROWS)
    for i, c in enumerate(row)
}


@dataclass(frozen=True)
class Verdict:
    """Whether two prompts ask the same thing, and why (categories only, no prompt words)."""

    same: bool
    reason: str


class QuestionVerifier:
    """Aligns two question forms word by word (see the module docstring)."""

    def __init__(
        self,
        vocabulary: Collection[str] | None = None,
        dictionary: Container[str] | None = None,
    ) -> None:
        # Words the embedding model knows whole, and (by default the packaged SCOWL list,
        # loaded on the first typo check) English words: a word neither knows may be a typo
        # of one they know. Without a vocabulary no typo is forgiven (fewer hits, never a
        # wrong one).
        self._vocabulary = vocabulary
        self._dictionary = dictionary
        self._synonyms: dict[str, frozenset[str]] = {}
        for group in SYNONYM_GROUPS:
            for word in group:
                self._synonyms[word] = self._synonyms.get(word, frozenset()) | (group - {word})

    def verify_turns(
        self, stored: Sequence[QuestionForm], asked: Sequence[QuestionForm], explain: bool = True
    ) -> Verdict:
        """Every message must ask the same (the caller matched turn count and roles).

        `explain=False`: a veto of differing words says only "vetoed: content words differ"
        without naming the kind (the cache keeps the first candidate's reason only, and naming
        it was a third of a vetoed candidate's cost)."""
        if len(stored) != len(asked):
            return Verdict(False, "vetoed: different number of messages")
        notes: list[str] = []
        for s, a in zip(stored, asked, strict=True):
            verdict = self.verify(s, a, explain)
            if not verdict.same:
                return verdict
            notes.append(verdict.reason)
        return Verdict(True, notes[-1] if len(set(notes)) == 1 else "; ".join(notes))

    def verify(self, stored: QuestionForm, asked: QuestionForm, explain: bool = True) -> Verdict:
        a, b = list(stored.tokens), list(asked.tokens)
        if not a or not b:
            return Verdict(False, "vetoed: nothing left to compare after normalising")
        if stored.opener and asked.opener and stored.opener != asked.opener:
            return Verdict(False, "vetoed: modality differs (can / could / will)")
        explained: Counter[str] = Counter()
        rewrite: dict[str, str] = {}
        names = stored.names | asked.names
        capitalised = names | stored.capitalised | asked.capitalised
        if a != b:
            a, b = _join_compounds(a, b), _join_compounds(b, a)
            typos = not (_about_words(a) or _about_words(b))
            units = typos or not (_about_wording(a) or _about_wording(b))
            cased = (stored.cased, asked.cased)
            kinds = ("synonym", "unit", "typo") if typos else ("synonym", "unit") if units else ()
            unexplained = self._align(
                a, b, rewrite, explained, names, capitalised, kinds, cased, stop_early=not explain
            )
            if unexplained:
                kind = _difference_kind(*unexplained) if explain else "content words differ"
                return Verdict(False, "vetoed: " + kind)
            b = [rewrite.get(w, w) for w in b]
        if _articles_differ(stored.articles, asked.articles, rewrite, set(a)):
            return Verdict(False, "vetoed: articles differ (a name or a letter)")
        if a != b:
            one_sentence = not stored.sentences and not asked.sentences
            how = reordering(a, b, capitalised, one_sentence)
            if how is None and len(a) == len(stored.tokens) and len(b) == len(asked.tokens):
                how = sentences_reordered(a, b, stored.sentences, asked.sentences, capitalised)
            if how is None:
                return Verdict(False, "vetoed: same words in another order (roles or direction)")
            explained[how] += 1
        if not explained:
            return Verdict(True, "verified: same words after normalising")
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(explained.items()))
        return Verdict(True, f"verified: same question ({parts})")

    # -- word alignment ------------------------------------------------------------------
    def _align(
        self,
        a: list[str],
        b: list[str],
        rewrite: dict[str, str],
        explained: Counter[str],
        names: frozenset[str],
        capitalised: frozenset[str],
        kinds: tuple[str, ...],
        cased: tuple[bool, bool] = (False, False),
        stop_early: bool = False,
    ) -> tuple[list[str], list[str]] | None:
        """Fill `rewrite` (b's word -> a's) with each explained difference; or return what
        stays unmatched. `names`: keywords in capitals, never rewritten; `capitalised`: names
        too, never a synonym ("Big Ben" / "Large Ben"), but may be misspelt.

        Each match removes one word from each side, so a word left without one, or sides of
        unequal length, already decide the veto: `stop_early` returns there (what is returned
        is then only part of the difference; used when no reason is asked for).
        """
        count_a, count_b = Counter(a), Counter(b)
        only_a = list((count_a - count_b).elements())
        only_b = list((count_b - count_a).elements())
        if stop_early and len(only_a) != len(only_b):
            return only_a, only_b
        kinds = kinds or ("synonym",)
        for word in list(only_a):
            if word in names or word.startswith(QUOTE):
                if stop_early:
                    return only_a, only_b
                continue  # literal: a keyword in capitals, quoted text
            for kind in kinds:
                literal = capitalised if kind == "synonym" else names
                if word in literal:
                    continue
                match = next(
                    (o for o in only_b if o not in literal and self._related(word, o, kind)),
                    None,
                )
                if match is None:
                    continue
                if kind == "synonym" and not in_context(a, word, b, match):
                    continue
                if kind == "unit" and not (as_unit(a, word) and as_unit(b, match)):
                    continue
                if kind == "typo" and _name_and_word(word, match, capitalised, cased):
                    continue
                only_a.remove(word)
                only_b.remove(match)
                rewrite[match] = word
                explained[kind] += 1
                break
            else:
                if stop_early:
                    return only_a, only_b  # `word` has no counterpart
        return (only_a, only_b) if only_a or only_b else None

    def _related(self, x: str, y: str, kind: str) -> bool:
        if y.startswith(QUOTE):
            return False  # quoted text is literal
        if kind == "synonym":
            return y in self._synonyms.get(x, ())
        if kind == "unit":
            return same_unit(x, y)
        return self._is_typo(x, y)

    def _is_typo(self, x: str, y: str) -> bool:
        vocabulary = self._vocabulary
        if vocabulary is None:
            return False
        if not (x.isalpha() and y.isalpha()) or min(len(x), len(y)) < 4 or x[0] != y[0]:
            return False
        if _undoubled(x) == _undoubled(y) and min(len(x), len(y)) >= 5:
            pass  # a letter doubled in the wrong place: "untill", "brocolli", "acommodate"
        elif OSA.distance(x, y, score_cutoff=1) != 1 or not _internal_edit(x, y):
            return False
        dictionary = self._dictionary if self._dictionary is not None else english_words()
        if dictionary is None:
            return False
        # A typo is a word nobody knows next to a known one. Two known words ("desert" /
        # "dessert", "bream" / "beam": MiniLM knows only "beam", the dictionary both) are two
        # meanings; two unknown ones (a foreign "casado" / "cansado") give no way to tell
        # which, if either, is the misspelling.
        return _known(x, vocabulary, dictionary) != _known(y, vocabulary, dictionary)


def _name_and_word(
    stored: str, asked: str, capitalised: frozenset[str], cased: tuple[bool, bool]
) -> bool:
    """A name on one side, written in lower case on the other by a writer who uses capitals:
    "What is Django?" / "What is dango?" are two things, not a misspelling. A prompt typed all
    in lower case ("who compsoed the four seasosn") says nothing, so its typos stay forgiven."""
    if (stored in capitalised) == (asked in capitalised):
        return False
    plain_side_cased = cased[1] if stored in capitalised else cased[0]
    return plain_side_cased


def _known(word: str, vocabulary: Container[str], dictionary: Container[str]) -> bool:
    return word in dictionary or word in vocabulary


def _about_words(tokens: list[str]) -> bool:
    """A prompt about a word ("what does X mean", "spell X") or naming a language, or with
    letters outside English's: its odd words may be foreign or the word asked about."""
    return any(w in WORD_QUESTIONS or w in LANGUAGE_NAMES or not w.isascii() for w in tokens)


def _about_wording(tokens: list[str]) -> bool:
    """A prompt about how something is written or said ("what does X mean", "say 5 km in
    Greek"), where "5 km" and "5 kilometres" are two texts. A language name that only
    describes a thing ("Greek yoghurt", "French press") does not make it one."""
    return any(w in WORD_QUESTIONS for w in tokens) or any(
        w in LANGUAGE_NAMES and i and tokens[i - 1] in _TO_A_LANGUAGE for i, w in enumerate(tokens)
    )


_TO_A_LANGUAGE = frozenset(("in", "into", "to", "from"))


def _articles_differ(
    stored: tuple[tuple[str, str], ...],
    asked: tuple[tuple[str, str], ...],
    rewrite: dict[str, str],
    words: set[str],
) -> bool:
    """ "the Matrix" / "a matrix" (a name and a thing), or "vitamin a do" / "a vitamin do" (an
    article on each side before a different word: one of them was a letter). An article on
    one side only ("bake a cake" / "bake cake") is no difference."""
    mine: dict[str, set[str]] = {}
    theirs: dict[str, set[str]] = {}
    for notes, out, names in ((stored, mine, {}), (asked, theirs, rewrite)):
        for article, word in notes:
            word = names.get(word, word)
            if word in words:
                out.setdefault(word, set()).add(article)
    if any(not mine[w] & theirs[w] for w in mine.keys() & theirs.keys()):
        return True
    moved = [w for w in mine if w not in theirs and "a" in mine[w]]
    return bool(moved) and any(w not in mine and "a" in theirs[w] for w in theirs)


def _internal_edit(x: str, y: str) -> bool:
    """One edit away, and not one that inflects: never the first letter, and the last letter
    only by swapping it with its neighbour ("meanign"), so "uovo" / "uova", "cat" / "cats"
    and "HTTP" / "HTTPS" stay different words."""
    p = 0
    while p < min(len(x), len(y)) and x[p] == y[p]:
        p += 1
    if len(x) == len(y):
        swapped = p + 1 < len(x) and x[p] == y[p + 1] and x[p + 1] == y[p]
        if swapped and x[p + 2 :] == y[p + 2 :]:
            return p >= 1
        # One letter struck for its neighbour on the keyboard, inside a long word. A vowel
        # swapped for a vowel is a different word as often as a misspelling ("ethanol" /
        # "ethanal", "bison" / "boson", i and o are neighbours), so it is not forgiven.
        # Inside a long word (not its last three letters, where "-ol" / "-al" and "-ane" /
        # "-ene" name other compounds) a vowel for a vowel is a misspelling: "seperate",
        # "definately".
        if x[p] in _VOWELS and y[p] in _VOWELS:
            return _vowel_slip(x, p)
        return 1 <= p < len(x) - 1 and len(x) >= 5 and y[p] in _KEY_NEIGHBOURS.get(x[p], "")
    longer = x if len(x) > len(y) else y
    return 1 <= p < len(longer) - 1  # one letter added or dropped inside the word


def _vowel_slip(word: str, p: int) -> bool:
    return len(word) >= 7 and 2 <= p <= len(word) - 4


def _undoubled(word: str) -> str:
    return "".join(c for i, c in enumerate(word) if i == 0 or c != word[i - 1])


def _join_compounds(words: list[str], other: list[str]) -> list[str]:
    """ "e mail" -> "email" when the other side writes it as one word."""
    others = set(other)
    out: list[str] = []
    i = 0
    while i < len(words):
        pair = words[i] + words[i + 1] if i + 1 < len(words) else ""
        if pair and pair in others and pair not in words and not pair.startswith(QUOTE):
            out.append(pair)
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def _difference_kind(only_a: list[str], only_b: list[str]) -> str:
    """Name what differs, by category (the words themselves stay out of telemetry)."""
    words = only_a + only_b
    if any(w.startswith(QUOTE) for w in words):
        return "quoted text differs"
    if any(w in NEGATORS for w in words) or any(
        _negates(x, y) or _negates(y, x) for x in only_a for y in only_b
    ):
        return "negation or polarity differs"
    if any(any(c.isdigit() for c in w) for w in words):
        return "numbers differ"
    if any(x.rstrip("s") == y.rstrip("s") for x in only_a for y in only_b):
        return "singular / plural differs"
    return f"content words differ ({len(only_a)} vs {len(only_b)})"


_PREFIXES = frozenset(NEGATING_PREFIXES)


def _negates(x: str, y: str) -> bool:
    """y is x with a negating prefix ("unsafe" / "safe"): one slice and a set lookup, since a
    vetoed candidate asks this for every pair of differing words."""
    return len(x) > 2 and len(y) > len(x) and y.endswith(x) and y[: -len(x)] in _PREFIXES


@functools.cache
def minilm_vocabulary() -> frozenset[str] | None:
    """Whole words of MiniLM's WordPiece vocabulary (22.5k), read from its installed files."""
    from mesh.embeddings.minilm_assets import EmbeddingModelMissing, minilm_path

    try:
        vocab = minilm_path() / "vocab.txt"
        lines = vocab.read_text(encoding="utf-8").splitlines()
    except (EmbeddingModelMissing, OSError) as err:
        log.info("cache verifier: no vocabulary (%s); typos will not be forgiven", err)
        return None
    return frozenset(w for w in lines if w.isalpha())

"""Does a cached prompt ask the same question as this one? The check behind every semantic hit.

Embedding similarity only proposes candidates: MiniLM puts "Is it safe ..." and "Is it unsafe
...", "Is Python faster than Java?" and the reverse, "feet in an inch" and "inches in a foot"
at cosine 0.99. So a candidate is served only if its words, reduced by question_form.py, can be
aligned with the request's words one for one, each difference explained:

- the same word; a listed synonym ("fix" / "repair", as verbs only where both can be nouns);
  a typo (one internal edit between a word the embedding model's vocabulary knows and one it
  does not: "captial" / "capital"; never two known or two unknown words, never a vowel for a
  vowel); a word in capitals inside mixed-case text (SELECT, NASA) is neither;
- in the same order, except a phrase opened by a preposition moved between the start and the
  end ("In Excel, how do I ..." / "How do I ... in Excel?") or the two sides of a plain "and" /
  "or" swapped ("Vue or React").

Anything else vetoes the hit: a word on one side only ("not", "without", "un-"), a different
number, date, version, entity, scope word, language, format or verb, a different inflection
("woman" / "women"), the same words in another order (swapped roles, conversion direction), a
different article before a name or a letter ("the Matrix" / "a matrix", "vitamin a do" / "a
vitamin do"), or a stripped "can you" against a stripped "will you".
Default-deny: a rule missing here costs a cache miss, never a wrong answer.

Verdicts name categories, never the prompt's words: they go on spans and on RouteInfo.
Cost: tens of microseconds per candidate, pure Python; runs in the cache's lookup thread.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from mesh.router.question_form import QUOTE, QuestionForm
from mesh.router.question_lexicon import (
    ARITHMETIC,
    AUXILIARIES,
    COMMUTATIVE_JOINERS,
    MODALS,
    MOVABLE_PHRASE_OPENERS,
    NEGATING_PREFIXES,
    NEGATORS,
    ORDER_SENSITIVE_NUMBERS,
    ORDERED_CONTEXT,
    QUANTIFIERS,
    SUBJECT_PRONOUNS,
    SYMMETRIC_LINKS,
    SYMMETRIC_RELATIONS,
    SYNONYM_GROUPS,
    SYNONYM_PAIRS,
    VERB_CUES,
    VERB_SYNONYMS,
)

log = logging.getLogger(__name__)
_MAX_CONJUNCT = 4  # tokens on each side of a swapped "and" / "or"
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

    def __init__(self, vocabulary: Collection[str] | None = None) -> None:
        # Words the embedding model knows whole: a word outside it may be a typo of one inside.
        # Without a vocabulary no typo is forgiven (fewer hits, never a wrong one).
        self._vocabulary = vocabulary
        self._synonyms: dict[str, frozenset[str]] = {}
        for group in SYNONYM_GROUPS:
            for word in group:
                self._synonyms[word] = self._synonyms.get(word, frozenset()) | (group - {word})

    def verify_turns(
        self, stored: Sequence[QuestionForm], asked: Sequence[QuestionForm]
    ) -> Verdict:
        """Every message must ask the same (the caller matched turn count and roles)."""
        if len(stored) != len(asked):
            return Verdict(False, "vetoed: different number of messages")
        notes: list[str] = []
        for s, a in zip(stored, asked, strict=True):
            verdict = self.verify(s, a)
            if not verdict.same:
                return verdict
            notes.append(verdict.reason)
        return Verdict(True, notes[-1] if len(set(notes)) == 1 else "; ".join(notes))

    def verify(self, stored: QuestionForm, asked: QuestionForm) -> Verdict:
        a, b = list(stored.tokens), list(asked.tokens)
        if not a or not b:
            return Verdict(False, "vetoed: nothing left to compare after normalising")
        if stored.opener and asked.opener and stored.opener != asked.opener:
            return Verdict(False, "vetoed: modality differs (can / will)")
        explained: Counter[str] = Counter()
        rewrite: dict[str, str] = {}
        if a != b:
            a, b = _join_compounds(a, b), _join_compounds(b, a)
            unexplained = self._align(a, b, rewrite, explained, stored.names | asked.names)
            if unexplained:
                return Verdict(False, "vetoed: " + _difference_kind(*unexplained))
            b = [rewrite.get(w, w) for w in b]
        if _articles_differ(stored.articles, asked.articles, rewrite, set(a)):
            return Verdict(False, "vetoed: articles differ (a name or a letter)")
        if a != b:
            how = _reordering(a, b)
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
    ) -> tuple[list[str], list[str]] | None:
        """Fill `rewrite` (b's word -> a's) with each explained difference; or return what
        stays unmatched."""
        only_a = list((Counter(a) - Counter(b)).elements())
        only_b = list((Counter(b) - Counter(a)).elements())
        for word in list(only_a):
            if word in names or word.startswith(QUOTE):
                continue  # literal: a keyword in capitals, quoted text
            for kind in ("synonym", "typo"):
                match = next(
                    (o for o in only_b if o not in names and self._related(word, o, kind)), None
                )
                if match is None:
                    continue
                if kind == "synonym" and not _verb_synonyms(a, word, b, match):
                    continue
                only_a.remove(word)
                only_b.remove(match)
                rewrite[match] = word
                explained[kind] += 1
                break
        return (only_a, only_b) if only_a or only_b else None

    def _related(self, x: str, y: str, kind: str) -> bool:
        if y.startswith(QUOTE):
            return False  # quoted text is literal
        if kind == "synonym":
            return y in self._synonyms.get(x, ()) or frozenset((x, y)) in SYNONYM_PAIRS
        return self._is_typo(x, y)

    def _is_typo(self, x: str, y: str) -> bool:
        vocabulary = self._vocabulary
        # A typo is an unknown word next to a known one. Two known words ("desert" / "dessert")
        # are two meanings; two unknown ones ("humus" / "hummus", a foreign "casado" /
        # "cansado") give no way to tell which, if either, is the misspelling.
        if vocabulary is None or (x in vocabulary) == (y in vocabulary):
            return False
        if not (x.isalpha() and y.isalpha()) or min(len(x), len(y)) < 4 or x[0] != y[0]:
            return False
        if OSA.distance(x, y, score_cutoff=1) != 1:
            return False
        return _internal_edit(x, y)


def _verb_synonyms(a: list[str], x: str, b: list[str], y: str) -> bool:
    """Two verbs that can both be nouns ("fix" / "repair") are synonyms only where a verb
    stands: first, or after "to", a modal, an auxiliary, a pronoun ("how do I fix", "can you
    fix"); "a GPS fix" is not "a GPS repair"."""
    if x not in VERB_SYNONYMS or y not in VERB_SYNONYMS:
        return True
    return all(
        i == 0 or words[i - 1] in VERB_CUES
        for words, word in ((a, x), (b, y))
        for i, w in enumerate(words)
        if w == word
    )


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
        if x[p] in _VOWELS and y[p] in _VOWELS:
            return False
        return 1 <= p < len(x) - 1 and len(x) >= 5 and y[p] in _KEY_NEIGHBOURS.get(x[p], "")
    longer = x if len(x) > len(y) else y
    return 1 <= p < len(longer) - 1  # one letter added or dropped inside the word


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


def _negates(x: str, y: str) -> bool:
    return any(y == prefix + x for prefix in NEGATING_PREFIXES)


def _reordering(a: list[str], b: list[str]) -> str | None:
    """How `b` is `a` reordered without changing the question, or None.

    At most one phrase moved between the start and the end, then at most one exchange: the
    two sides of a plain "and" / "or", of a symmetric relation, or a "not" placed after the
    subject instead of after its auxiliary.
    """
    for moved, c in _phrase_moves(a):
        if c == b:
            return "phrase moved"
        how = _exchange(c, b)
        if how is not None:
            return f"phrase moved, {how}" if moved else how
    return None


def _phrase_moves(a: list[str]) -> list[tuple[bool, list[str]]]:
    """`a` itself, and `a` with a phrase opened by a preposition moved to the other end."""
    out = [(False, a)]
    for i in range(1, len(a)):
        opened = a[0] in MOVABLE_PHRASE_OPENERS or a[i] in MOVABLE_PHRASE_OPENERS
        inside_quote = a[i - 1].startswith(QUOTE) and a[i].startswith(QUOTE)
        if opened and not inside_quote:
            out.append((True, a[i:] + a[:i]))
    return out


def _exchange(a: list[str], b: list[str]) -> str | None:
    if len(a) != len(b):
        return None
    first = next(i for i in range(len(a)) if a[i] != b[i])
    last = max(i for i in range(len(a)) if a[i] != b[i])
    if _not_moved(a, b, first, last):
        return "'not' placed after the subject"
    numbers_ordered = any(w in ORDER_SENSITIVE_NUMBERS for w in a)
    symmetric = any(w in SYMMETRIC_RELATIONS for w in a)
    # Two spans exchanged: the first starts where a and b first differ, the second ends where
    # they last differ; whatever stands between them stays in place.
    for left in range(1, _MAX_CONJUNCT + 1):
        for right in range(1, _MAX_CONJUNCT + 1):
            x, y = a[first : first + left], a[last + 1 - right : last + 1]
            middle = a[first + left : last + 1 - right]
            if not middle or a[:first] + y + middle + x + a[last + 1 :] != b:
                continue
            if any(w.startswith(QUOTE) for w in x + y + middle):
                continue
            # A function's parameters, a table's columns, steps in sequence: the context
            # orders the items. The items themselves may be the ordering words ("before or
            # after" / "after or before").
            if any(w in ORDERED_CONTEXT for w in a[:first] + middle + a[last + 1 :]):
                return None
            numeric = _numeric(x) or _numeric(y)
            if numeric and (numbers_ordered or _in_arithmetic(a, first, last)):
                continue
            if middle == [middle[0]] and middle[0] in COMMUTATIVE_JOINERS:
                return "items swapped around and/or"
            if symmetric and not numeric and _symmetric_link(middle):
                return "sides of a symmetric relation swapped"
    return None


def _in_arithmetic(a: list[str], first: int, last: int) -> bool:
    """A number swapped next to an operator is part of an expression: "5 and 7 times 2"."""
    outside = a[first - 1 : first] + a[last + 1 : last + 2]
    return any(w in ARITHMETIC for w in outside)


def _symmetric_link(middle: list[str]) -> bool:
    """ "from" / "to" / "as" / "with" / "and", alone or after the relation word itself."""
    if middle[-1] not in SYMMETRIC_LINKS:
        return False
    return len(middle) == 1 or (len(middle) == 2 and middle[0] in SYMMETRIC_RELATIONS)


def _not_moved(a: list[str], b: list[str], first: int, last: int) -> bool:
    """ "why do not cats like" / "why do cats not like": one "not" right after an auxiliary in
    one, after the next one to three words in the other, crossing no quantifier."""
    for x, y in ((a, b), (b, a)):
        if x[first] != "not" or first == 0:
            continue
        aux = x[first - 1]
        why_modal = aux in MODALS and first > 1 and x[first - 2] == "why"
        if aux not in AUXILIARIES and not why_modal:
            continue
        crossed = x[first + 1 : last + 1]
        if len(crossed) > 3 or y[last] != "not" or y[first:last] != crossed:
            continue
        if any(w in QUANTIFIERS or w in NEGATORS or w.startswith(QUOTE) for w in crossed):
            continue
        # The subject only: a pronoun is the whole subject, and "to" opens another verb
        # ("why don't I want to eat" / "why do I want to not eat").
        if "to" in crossed or (len(crossed) > 1 and any(w in SUBJECT_PRONOUNS for w in crossed)):
            continue
        return True
    return False


def _numeric(words: list[str]) -> bool:
    return any(any(c.isdigit() for c in w) for w in words)


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

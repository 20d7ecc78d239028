"""Word orders that ask the same question, for the cache verifier (cache_verify.py).

Two prompts with the same words in another order usually ask different things ("Is Rome older
than Athens?"). Only these reorderings are forgiven, each with guards:

- a phrase opened by a preposition moved between the start and the end ("In Excel, how do I
  ..." / "How do I ... in Excel?"), when it cannot be about someone: its object is a name or
  a number, it opens with "using" / "via" / "during" / "by" / "throughout", or at the end it
  follows a verb ("What should I eat after a workout?"); "a colleague on leave" / "On leave,
  what should I say to a colleague?" is another question;
- the two sides of a plain "and" / "or" exchanged ("Vue or React"), of the same length or the
  longer one a name: in "retired teachers and nurses" "retired" may qualify both, in "nurses
  and retired teachers" only one; never two actions in sequence ("to eat and swim");
- the two sides of a symmetric relation ("How far is X from Y");
- (round 8) a subordinate clause moved between the start and the end of its sentence ("If my
  flight is cancelled, am I owed money?" / "Am I owed money if my flight is cancelled?"),
  never after a verb that makes it the question ("tell me if", "how do I know if");
- (round 8) whole sentences given in another order, when at most one of them asks and none
  points at another's place ("then", "if so", "later") or, in a prompt of three or more
  sentences, refers back ("its");
- "not" after the subject instead of after its auxiliary ("Why don't cats ..." / "Why do cats
  not ..."), the subject being one word or a possessive and a word, crossing no adverb,
  quantifier or indefinite pronoun ("Why doesn't everybody vote?" is not "Why does everybody
  not vote?").
"""

from __future__ import annotations

import itertools

from mesh.router.question_form import QUOTE
from mesh.router.question_lexicon import (
    ACTION_CUES,
    ANAPHORS,
    ARITHMETIC,
    AUXILIARIES,
    COMMUTATIVE_JOINERS,
    COMPLEMENT_TAKERS,
    DETACHED_PHRASE_OPENERS,
    FREQUENCY_ADVERBS,
    INDEFINITE_PRONOUNS,
    MODALS,
    MOVABLE_PHRASE_OPENERS,
    NEGATORS,
    ORDER_SENSITIVE_NUMBERS,
    ORDERED_CONTEXT,
    POSSESSIVES,
    QUANTIFIERS,
    QUESTION_WORDS,
    REQUEST_VERBS,
    SENTENCE_ORDER_WORDS,
    SUBJECT_PRONOUNS,
    SUBJECTS,
    SUBORDINATORS,
    SYMMETRIC_LINKS,
    SYMMETRIC_RELATIONS,
)

_MAX_CONJUNCT = 4  # tokens on each side of a swapped "and" / "or"
# A sentence opened by one of these asks or commands (see _statement).
STATEMENT_BLOCKERS = QUESTION_WORDS | AUXILIARIES | MODALS | REQUEST_VERBS | {"howto"}


def reordering(
    a: list[str], b: list[str], names: frozenset[str], one_sentence: bool = True
) -> str | None:
    """How `b` is `a` reordered without changing the question, or None. `names`: words written
    as names (capitalised inside a sentence, or in capitals); `one_sentence`: both are one
    sentence (a subordinate clause moves only inside its sentence).

    At most one phrase moved between the start and the end, then at most one exchange: the
    two sides of a plain "and" / "or", of a symmetric relation, or a "not" placed after the
    subject instead of after its auxiliary.
    """
    for moved, c in _phrase_moves(a, names, one_sentence):
        if c == b:
            return "phrase moved"
        how = _exchange(c, b, names)
        if how is not None:
            return f"phrase moved, {how}" if moved else how
    return None


def _phrase_moves(
    a: list[str], names: frozenset[str], one_sentence: bool
) -> list[tuple[bool, list[str]]]:
    """`a` itself, and `a` with a prepositional phrase moved to the other end, where the
    phrase cannot be about someone (see the module docstring)."""
    out = [(False, a)]
    for i in range(1, len(a)):
        if a[i - 1].startswith(QUOTE) and a[i].startswith(QUOTE):
            continue
        # The phrase opens the prompt and moves to the end, or closes it and moves to the start.
        leading = a[0] in MOVABLE_PHRASE_OPENERS and _movable(a[:i], a[i:], names)
        trailing = a[i] in MOVABLE_PHRASE_OPENERS and _movable(a[i:], a[:i], names)
        clause = one_sentence and (_clause_moves(a[:i], a[i:]) or _clause_moves(a[i:], a[:i]))
        if leading or trailing or clause:
            out.append((True, a[i:] + a[:i]))
    return out


def _clause_moves(clause: list[str], main: list[str]) -> bool:
    """A subordinate clause ("if my flight is cancelled", "when I stand up") may stand before
    or after the main clause, unless after it the clause is what is asked: "tell me if",
    "how do I know if", "remind me when" (a complement, not a condition)."""
    return (
        clause[0] in SUBORDINATORS
        and len(clause) >= 3
        and len(main) >= 2
        and main[-1] not in COMPLEMENT_TAKERS
    )


def sentences_reordered(
    a: list[str],
    b: list[str],
    a_starts: tuple[int, ...],
    b_starts: tuple[int, ...],
    names: frozenset[str],
) -> str | None:
    """The same sentences in another order ("I'm going to Iceland in February. What should I
    pack?" / "What should I pack? I'm going to Iceland in February."), each the same or
    reordered as above; only when at most one sentence asks or commands, the others being
    statements, none points at another's place ("then", "if so", "the first one", "later"),
    and a word referring back ("it", "she") stands only in a prompt of two sentences, in
    the one that asks."""
    if not a_starts or len(a_starts) != len(b_starts):
        return None
    xs, ys = _split(a, a_starts), _split(b, b_starts)
    if any(w in SENTENCE_ORDER_WORDS or w.startswith(QUOTE) for w in a):
        return None
    asking = [s for s in xs if not _statement(s)]
    if len(asking) > 1:
        return None
    referring = [s for s in xs if any(w in ANAPHORS for w in s)]
    if referring and (len(xs) != 2 or referring != asking):
        return None
    free = list(range(len(xs)))
    for y in ys:
        match = next((i for i in free if xs[i] == y), None)
        if match is None:
            match = next((i for i in free if reordering(xs[i], y, names) is not None), None)
        if match is None:
            return None
        free.remove(match)
    return "sentences reordered"


def _split(words: list[str], starts: tuple[int, ...]) -> list[list[str]]:
    bounds = [0, *starts, len(words)]
    return [words[i:j] for i, j in itertools.pairwise(bounds)]


def _statement(sentence: list[str]) -> bool:
    """ "I have a 2015 MacBook", "my budget is 800", "the leaves are yellow": a subject and a
    verb, not a question ("is it", "how") or an order ("add 5", "keep it short")."""
    first = sentence[0]
    if first in SUBJECT_PRONOUNS or first in POSSESSIVES:
        return True
    if first in STATEMENT_BLOCKERS:
        return False
    return any(w in AUXILIARIES or w in MODALS for w in sentence[1:])


def _movable(phrase: list[str], clause: list[str], names: frozenset[str]) -> bool:
    return _detached(phrase, names) or _after_a_verb(clause)


def _detached(phrase: list[str], names: frozenset[str]) -> bool:
    """A phrase that says how, when or where, never who: "using Git", "by train", "during the
    night", "in Excel", "in 2010"; not "in debt", "after surgery", "on leave", which at the end
    may describe the person before them and at the start the asker."""
    if phrase[0] in DETACHED_PHRASE_OPENERS:
        return True
    rest = phrase[1:]
    return bool(rest) and all(w in names or any(c.isdigit() for c in w) for w in rest)


def _after_a_verb(clause: list[str]) -> bool:
    """At the end of this clause the phrase follows a verb, so it can only say when or how that
    is done: "what should I eat | after a workout", "how do I stretch | before running"; after
    a noun ("a dog | after surgery") it may describe the noun."""
    return len(clause) >= 2 and clause[-2] in SUBJECTS


def _exchange(a: list[str], b: list[str], names: frozenset[str]) -> str | None:
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
                if _conjuncts_swap(a, first, x, y, middle[0], names):
                    return "items swapped around and/or"
                continue
            if symmetric and not numeric and _symmetric_link(middle):
                return "sides of a symmetric relation swapped"
    return None


def _conjuncts_swap(
    a: list[str], first: int, x: list[str], y: list[str], joiner: str, names: frozenset[str]
) -> bool:
    """ "Vue or React", "the sum of 15 and 27", "the Eiffel Tower or the Shard"; not "retired
    teachers and nurses" / "nurses and retired teachers" (what "retired" qualifies changes),
    nor "to eat and swim" / "to swim and eat" (one action, then the other)."""
    if len(x) != len(y) and not all(w in names for w in max(x, y, key=len)):
        return False
    before = a[first - 1] if first else ""
    return joiner != "and" or before not in ACTION_CUES


def _in_arithmetic(a: list[str], first: int, last: int) -> bool:
    """A number swapped next to an operator is part of an expression: "5 and 7 times 2"."""
    outside = a[first - 1 : first] + a[last + 1 : last + 2]
    return any(w in ARITHMETIC for w in outside)


def _symmetric_link(middle: list[str]) -> bool:
    """ "from" / "to" / "as" / "with" / "and", alone or after the relation word itself."""
    if middle[-1] not in SYMMETRIC_LINKS:
        return False
    if _same_as(middle):
        return True
    return len(middle) == 1 or (len(middle) == 2 and middle[0] in SYMMETRIC_RELATIONS)


def _same_as(middle: list[str]) -> bool:
    """ "the same size / age / height as" (round 8)."""
    return len(middle) == 3 and middle[0] == "same" and middle[2] == "as"


def _not_moved(a: list[str], b: list[str], first: int, last: int) -> bool:
    """ "why do not cats like" / "why do cats not like": one "not" right after an auxiliary in
    one, after the subject in the other: one word ("cats", "the moon"), or a possessive and
    one word ("my code")."""
    for x, y in ((a, b), (b, a)):
        if x[first] != "not" or first == 0:
            continue
        aux = x[first - 1]
        why_modal = aux in MODALS and first > 1 and x[first - 2] == "why"
        if aux not in AUXILIARIES and not why_modal:
            continue
        crossed = x[first + 1 : last + 1]
        if y[last] != "not" or y[first:last] != crossed:
            continue
        if (len(crossed) == 2 and crossed[0] not in POSSESSIVES) or len(crossed) > 2:
            continue  # "people always", "I want to": more than the subject
        # The scope of "not" changes across these: "not everybody" / "everybody ... not",
        # "not always" / "always not", "not all" / "all ... not".
        if any(_scoped(w) for w in crossed):
            continue
        return True
    return False


def _scoped(word: str) -> bool:
    return (
        word in QUANTIFIERS
        or word in NEGATORS
        or word in INDEFINITE_PRONOUNS
        or word in FREQUENCY_ADVERBS
        or (word.endswith("ly") and len(word) > 4)
        or word.startswith(QUOTE)
    )


def _numeric(words: list[str]) -> bool:
    return any(any(c.isdigit() for c in w) for w in words)

"""Person names that the small spaCy model misses: a census first-name list and naming cues.

en_core_web_sm finds about two thirds of the PERSON spans in the dev set's train half; what it
misses is mostly a first name on its own ("Gregory called"), a name in a list ("Rebecca, Howard
and Yolanda"), a name after a cue ("My name is Oskari", "maiden name is lindqvist"), names from
outside the English-speaking world and names in lower case. This recognizer adds, as PERSON:

- a capitalised first name from the US Census 1990 first-name lists (guards/data/
  census_first_names.txt; provenance in guards/data/ATTRIBUTION.md), with the capitalised words
  and initials that follow it ("Harold J. Pemberton"). First names that are also ordinary English
  words or places (AMBIGUOUS: "May", "Will", "Grace", "Austin") count only when a capitalised
  surname follows;
- the one to three words after a naming cue ("my name is", "maiden name is", "Name:"), in any
  case, stopping at punctuation or an ordinary word.

Pure Python, a regex pass and set lookups: tens of microseconds per prompt. Presidio runs it
beside spaCy (guards/detectors/presidio.py); overlapping findings are merged by the verdict.
"""

from __future__ import annotations

import bisect
import functools
import re
from pathlib import Path

NAMES_FILE = Path(__file__).resolve().parent.parent / "data" / "census_first_names.txt"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


NAME_SCORE = 0.6  # above Presidio's default 0.5 threshold, below its pattern recognizers
CUE_SCORE = 0.7

# Census first names that are also common English words, titles or places.
AMBIGUOUS = _words(
    """amber an april art asia austin autumn berry bill bob brook brooks buck bud carol carolina
    carry karma dolores
    carter chance charity chase china christian clay cliff crystal daisy dale dallas dawn dean
    don dot drew earl echo else eve faith florida forest frank gay gene georgia glen golden
    grace guy harmony heath holly hope houston hunter in india iris ivy jack jade jay jean
    jordan joy june kay kelly king lane lee leo liberty lily long lou love lynn major mark
    marshall mason may melody mercedes merry miles nan ned page paris parker pat patience pearl
    princess prudence queen ray reed regina rex rich robin rod rosa rose ruby sandy sharon so
    sonny spring star sterling stormy sue summer sunny sydney tanner taylor tim tom vera
    victoria virginia wade will winter young"""
)
# A first name followed by one of these names a street, a place or a firm ("St. John Street",
# "Thomas and Sons"), not a person.
NOT_A_PERSON_AFTER = _words(
    """street st road rd avenue ave lane ln drive dr boulevard blvd way place pl square sq
    court ct crescent terrace close lodge suite apt apartment highway hwy parkway park bridge
    river lake mount mountain island bay beach county city town village station airport
    hospital school college university church cathedral hotel inc llc ltd ltd. corp company
    co group bank partners associates sons brothers foundation institute center centre
    street's"""
)
# Words that end a name after a cue ("my name is Anna and ...").
_STOP = _words(
    """and or but the a an is are was were to of in on at for from with by as i my me we you
    your he she it they them his her their this that not no please thanks thank"""
)
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['\u2019-][^\W\d_])*\.?")
_CUE = re.compile(
    r"\b(?:my name is|my name's|maiden name is|(?:first |last |full |sur)?name\s*:)\s*",
    re.IGNORECASE,
)


@functools.cache
def first_names() -> frozenset[str]:
    """The census list less function words that happen to be names in it ("my", "an")."""
    names = NAMES_FILE.read_text(encoding="utf-8").split()
    return frozenset(n for n in names if len(n) > 2 and n not in _STOP)


def _is_capitalised(word: str) -> bool:
    return _is_initial(word) or (word[:1].isupper() and not word.isupper())


def _is_initial(word: str) -> bool:
    """ "H." or "H" ("I" is the pronoun, not an initial)."""
    return (
        word != "I" and len(word) <= 2 and word[:1].isupper() and (len(word) == 1 or word[1] == ".")
    )


def name_spans(text: str) -> list[tuple[int, int, float]]:
    """(start, end, score) of each likely person name in `text`."""
    names = first_names()
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
    spans: list[tuple[int, int, float]] = []
    i = 0
    while i < len(words):
        start, _, word = words[i]
        key = word.rstrip(".").lower()
        if key in names and word[:1].isupper() and not word.isupper():
            j = i + 1
            # the capitalised words and initials that follow on the same line, at most three
            while (
                j < len(words)
                and j - i <= 3
                and _is_capitalised(words[j][2])
                and (_is_initial(words[j - 1][2]) or not words[j - 1][2].endswith("."))
                and (_is_initial(words[j][2]) or words[j][2].lower() not in _STOP)
                and "\n" not in text[words[j - 1][1] : words[j][0]]
                and _only_space_between(text, words[j - 1][1], words[j][0])
            ):
                j += 1
            after = [w[2].lower().rstrip(".,") for w in words[i + 1 : j + 2]]
            if any(w in NOT_A_PERSON_AFTER for w in after):
                i = j
                continue
            if j > i + 1 and _is_initial(words[j - 1][2]) and not words[j - 1][2].endswith("."):
                j -= 1  # a bare capital letter ends no name ("Paul A" in a list)
            if j > i + 1 or key not in AMBIGUOUS:
                last_end = words[j - 1][1]
                spans.append((start, last_end - text[start:last_end].endswith("."), NAME_SCORE))
                i = j
                continue
        i += 1
    cued = [span for cue in _CUE.finditer(text) if (span := _name_after(text, cue.end()))]
    if not cued:
        return spans
    # A cued name replaces the list names it overlaps (both lists are in text order).
    starts = [start for start, _ in cued]
    kept = [
        s
        for s in spans
        if not any(
            cued[k][0] < s[1] and s[0] < cued[k][1]
            for k in (bisect.bisect_right(starts, s[0]) - 1, bisect.bisect_right(starts, s[0]))
            if 0 <= k < len(cued)
        )
    ]
    return sorted(kept + [(start, end, CUE_SCORE) for start, end in cued])


def _only_space_between(text: str, a: int, b: int) -> bool:
    return text[a:b].strip() == ""


def _name_after(text: str, at: int) -> tuple[int, int] | None:
    """One to three name words right after a cue, up to punctuation or an ordinary word."""
    found: list[tuple[int, int]] = []
    for m in _WORD.finditer(text, at):
        if found and not _only_space_between(text, found[-1][1], m.start()):
            break
        if not found and text[at : m.start()].strip():
            return None
        word = m.group()
        if len(found) == 3 or (word.lower().rstrip(".") in _STOP and not _is_initial(word)):
            break
        found.append((m.start(), m.end()))
    if not found:
        return None
    end = found[-1][1]
    return found[0][0], end - text[found[0][0] : end].endswith(".")

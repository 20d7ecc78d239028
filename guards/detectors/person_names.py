"""Person names that the small spaCy model misses: census name lists, titles and naming cues.

en_core_web_sm finds about two thirds of the PERSON spans in the dev set's train half; what it
misses is mostly a first name on its own ("Gregory called"), a name in a list ("Rebecca, Howard
and Yolanda"), a name after a cue ("My name is Oskari", "maiden name is lindqvist"), names from
outside the English-speaking world, surnames on their own and names in lower case. This
recognizer adds, as PERSON:

- a capitalised first name from the US Census 1990 first-name lists (guards/data/
  census_first_names.txt; provenance in guards/data/ATTRIBUTION.md), with the capitalised words
  and initials that follow it ("Harold J. Pemberton"). First names that are also ordinary English
  words or places (AMBIGUOUS: "May", "Will", "Grace", "Austin") count only when a capitalised
  surname follows;
- the one to three words after a naming cue ("my name is", "maiden name is", "Name:", "last
  name?"), in any case, stopping at punctuation or an ordinary word;
- the capitalised words after a title ("Mr. Baader", "Dr. Berta Szöllössy");
- a surname after a capitalised word and any initials ("Luiza Gomes", "Faina D. Yefremova":
  first names from anywhere), or alone inside a sentence as the last of its capitalised words
  ("ex-Zombie Kastner is"): a census surname (guards/data/census_surnames.txt, the 1990 list
  less the surnames that are also English words, places or days; guards/build_surnames.py) or
  a central or eastern European or Nordic surname ending ("-ová", "-ska", "-dóttir", "-sen");
- every member of a list ("Eklund, Michael and Hodge", "Abramovich and Wilson") in which one
  member is a census first name or a surname;
- in text written all in lower case, a first name and the names right after it ("monika
  žilková").

The surname, list and lower-case rules read places, dates and products as people too ("Paris,
London and Rome"): the caller passes what spaCy's NER calls those (`not_people`), and their
spans are dropped. Pure Python, a regex pass and set lookups: about 60 µs per short prompt
(20 µs with first names and cues only), beside ~10 ms of spaCy.
Presidio runs it beside spaCy (guards/detectors/presidio.py); overlapping findings are merged by
the verdict.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from pathlib import Path

NAMES_FILE = Path(__file__).resolve().parent.parent / "data" / "census_first_names.txt"
SURNAMES_FILE = Path(__file__).resolve().parent.parent / "data" / "census_surnames.txt"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


NAME_SCORE = 0.6  # above Presidio's default 0.5 threshold, below its pattern recognizers
CUE_SCORE = 0.7
TITLE_SCORE = 0.7
SURNAME_SCORE = 0.55  # a surname, or a list member, without a first name: weaker evidence

# Census first names that are also common English words, titles or places; the second part
# are those that public English text (guards/build_surnames.py's corpora) writes in lower case
# at least twice ("Many people...", "See the attached", "Numbers").
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
    victoria virginia wade will winter young
    aide alpha america angel angelic angle aura basil beau bee bell belle blossom brain buddy
    bunny candy caprice cherry chastity chin conception del delta desire destiny diamond ebony
    era fairy fern flora foster france gale german ginger glory grant hang hazel herb honey
    hung irish israel ivory junior kit kitty lady latina lean les loan man manual many maple
    marine marry marvel mercy miss moon noble numbers olive penny ping precious prince royal
    sage sang season see son song soon sun sunshine temple tequila tiny van velvet violet von
    walker ward windy yen"""
)
# A first name followed by one of these names a street, a place or a firm ("St. John Street",
# "Thomas and Sons", "Zachary Cliffs"), not a person; none of them is a surname or a list
# member itself ("Apt. 902", "Via Roma"). Street designators that are common surnames (Hill,
# Green, Mills, Fields) are left out: "John Hill" is a person more often than a street.
NOT_A_PERSON_AFTER = _words(
    """street st road rd avenue ave lane ln drive dr boulevard blvd way place pl square sq
    court ct crescent terrace close lodge suite apt apartment highway hwy parkway park bridge
    river lake mount mountain island bay beach county city town village station airport
    hospital school college university church cathedral hotel inc llc ltd ltd. corp company
    co group bank partners associates sons brothers foundation institute center centre
    street's streets squares islands cliffs creek extensions point points crossing heights
    ridge valley trail grove gardens estates circle loop alley plaza pike summit route mews
    box unit floor building room via rua rue calle avenida piazza piazzetta viale corso
    corporation incorporated limited gmbh"""
)
# A name right after one of these names a street ("Via Roma", "Kimberly Way Laidlaw Green").
STREET_BEFORE = _words(
    """via rua rue calle avenida piazza piazzetta viale corso plaza way street road avenue
    lane drive boulevard"""
)
# Surname endings of central and eastern European and Nordic names that the US census lists
# rarely hold ("Szczepańska", "Yefremova", "Guðmundsdóttir", "Bergsveinsson", "Petrussen").
SURNAME_ENDING = re.compile(
    r"(?:ová|ova|ská|(?<!a)ska|ski|ský|sky|ovich|ović|ovič|ević|enko|escu|dóttir|dottir|sson|"
    r"ssen|poulos)\Z"
)
# Words that end a name after a cue ("my name is Anna and ...").
_STOP = _words(
    """and or but the a an is are was were to of in on at for from with by as i my me we you
    your he she it they them his her their this that not no please thanks thank"""
)
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['\u2019-][^\W\d_])*\.?")
_CUE = re.compile(
    r"\b(?:(?:(?:my|his|her|their|your|whose|maiden|first|last|full|middle|family)\s+|sur)"
    r"name(?:\s+is|'s)"
    r"|(?:(?:first|last|full|middle|family)\s+|sur)?name\s*:"
    r"|(?:(?:first|last|middle|family)\s+|sur)name\s*\?)\s*",
    re.IGNORECASE,
)
# Titles before a name; "Dr" and "Prof" only with their dot ("Cheriton Dr" is a drive).
_TITLES = _words("mr mr. mrs mrs. ms ms. mx mx. dr. prof. sir dame")
# Labels of spaCy's NER whose spans the surname and list rules leave alone: places, dates,
# events, products ("New York", "Labor Day"). Not ORG: the small model calls "Luiza Gomes" one.
NOT_PEOPLE_LABELS = _words(
    "GPE LOC FAC NORP EVENT DATE TIME PRODUCT LANGUAGE LAW MONEY QUANTITY PERCENT"
)


@functools.cache
def first_names() -> frozenset[str]:
    """The census list less function words that happen to be names in it ("my", "an")."""
    names = NAMES_FILE.read_text(encoding="utf-8").split()
    return frozenset(n for n in names if len(n) > 2 and n not in _STOP)


@functools.cache
def surnames() -> frozenset[str]:
    """The census surnames that are not English words (guards/build_surnames.py), less the
    ambiguous first names and function words."""
    names = SURNAMES_FILE.read_text(encoding="utf-8").split()
    return frozenset(
        n for n in names if n not in AMBIGUOUS and n not in _STOP and n not in NOT_A_PERSON_AFTER
    )


_Word = tuple[int, int, str]  # start, end, text


def _is_surname(key: str) -> bool:
    return key in surnames() or (len(key) >= 6 and SURNAME_ENDING.search(key) is not None)


def _after_street_word(text: str, words: list[_Word], i: int) -> bool:
    return (
        i > 0
        and _key(words[i - 1][2]) in STREET_BEFORE
        and _same_line_space(text, words[i - 1][1], words[i][0])
    )


def _is_capitalised(word: str) -> bool:
    return _is_initial(word) or (word[:1].isupper() and not word.isupper())


def _is_initial(word: str) -> bool:
    """ "H." or "H" ("I" is the pronoun, not an initial)."""
    return (
        word != "I" and len(word) <= 2 and word[:1].isupper() and (len(word) == 1 or word[1] == ".")
    )


def _is_name_word(word: str) -> bool:
    """Capitalised, not shouted, not an initial, not a function word, title or street word."""
    key = word.lower()
    return (
        word[:1].isupper()
        and not word.isupper()
        and not _is_initial(word)
        and key not in _STOP
        and key not in _TITLES
        and key.rstrip(".") not in NOT_A_PERSON_AFTER
    )


def _key(word: str) -> str:
    """The word as the lists hold it: lower case, without a final dot or possessive "'s"."""
    key = word.rstrip(".").lower()
    return key[:-2] if key.endswith(("'s", "\u2019s")) else key


def _followers(text: str, words: list[_Word], i: int) -> int:
    """The index after the capitalised words and initials that follow words[i] on the same
    line, separated by spaces only, at most three."""
    j = i + 1
    while (
        j < len(words)
        and j - i <= 3
        and _is_capitalised(words[j][2])
        and (_is_initial(words[j - 1][2]) or not words[j - 1][2].endswith("."))
        and (_is_initial(words[j][2]) or words[j][2].lower() not in _STOP)
        and _same_line_space(text, words[j - 1][1], words[j][0])
    ):
        j += 1
    return j


def _names_a_place_or_firm(text: str, words: list[_Word], i: int, j: int) -> bool:
    """Whether words[i:j], or the two words after it on the same line, name a street, place
    or firm ("St. John Street", "Thomas and Sons")."""
    after = [w[2] for w in words[i + 1 : j]]
    for k in range(j, min(j + 2, len(words))):
        if not _same_line_space(text, words[k - 1][1], words[k][0]):
            break
        after.append(words[k][2])
    return any(w.lower().rstrip(".,") in NOT_A_PERSON_AFTER for w in after)


def _span(text: str, words: list[_Word], i: int, j: int) -> tuple[int, int]:
    """words[i:j] as a span, less a final dot."""
    start, last_end = words[i][0], words[j - 1][1]
    return start, last_end - text[start:last_end].endswith(".")


class _Found:
    """Spans over word indices, first rule first: a later rule's span that overlaps an earlier
    one is dropped. Checked per word, so linear in the number of words."""

    def __init__(self, words: list[_Word]) -> None:
        self.covered = bytearray(len(words))
        self.spans: list[tuple[int, int, float, bool]] = []  # start, end, score, weak

    def add(self, i: int, j: int, span: tuple[int, int], score: float, weak: bool = False) -> None:
        if not any(self.covered[i:j]):
            self.covered[i:j] = b"\x01" * (j - i)
            self.spans.append((span[0], span[1], score, weak))


def name_spans(
    text: str, not_people: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int, float]]:
    """(start, end, score) of each likely person name in `text`. `not_people`: spans known to
    be something else (spaCy's places, dates, products; sorted by start), that the surname and
    list rules do not claim."""
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
    found = _Found(words)
    _first_name_spans(text, words, found)
    _title_spans(text, words, found)
    _surname_spans(text, words, found)
    _list_spans(text, words, found)
    if not any(c.isupper() for c in text):
        _lowercase_spans(text, words, found)
    starts = [a for a, _ in not_people]
    spans = sorted(
        (start, end, score)
        for start, end, score, weak in found.spans
        if not (weak and _overlaps_any(not_people, starts, start, end))
    )
    cued = [span for cue in _CUE.finditer(text) if (span := _name_after(text, cue.end()))]
    if not cued:
        return spans
    # A cued name replaces the names it overlaps (both lists are in text order).
    cue_starts = [start for start, _ in cued]
    kept = [s for s in spans if not _overlaps_any(cued, cue_starts, s[0], s[1])]
    return sorted(kept + [(start, end, CUE_SCORE) for start, end in cued])


def _overlaps_any(
    spans: Sequence[tuple[int, int]], starts: list[int], start: int, end: int
) -> bool:
    """Whether [start, end) overlaps one of `spans` (disjoint, sorted; `starts` their starts).
    Overlapping `not_people` spans from spaCy are disjoint too (doc.ents)."""
    k = bisect.bisect_right(starts, start)
    return any(spans[n][0] < end and start < spans[n][1] for n in (k - 1, k) if 0 <= n < len(spans))


def _first_name_spans(text: str, words: list[_Word], found: _Found) -> None:
    names = first_names()
    i = 0
    while i < len(words):
        word = words[i][2]
        key = _key(word)
        if key in names and word[:1].isupper() and not word.isupper():
            j = _followers(text, words, i)
            if _names_a_place_or_firm(text, words, i, j) or _after_street_word(text, words, i):
                i = j
                continue
            if j > i + 1 and _is_initial(words[j - 1][2]) and not words[j - 1][2].endswith("."):
                j -= 1  # a bare capital letter ends no name ("Paul A" in a list)
            if j > i + 1 or key not in AMBIGUOUS:
                found.add(i, j, _span(text, words, i, j), NAME_SCORE)
                i = j
                continue
        i += 1


def _title_spans(text: str, words: list[_Word], found: _Found) -> None:
    """The capitalised words after a title: "Mr. Baader", "Dr. Berta Szöllössy"."""
    for i in range(len(words) - 1):
        if words[i][2].lower() in _TITLES and words[i][2][:1].isupper():
            k = i + 1
            if not _is_name_word(words[k][2]) or not _same_line_space(
                text, words[i][1], words[k][0]
            ):
                continue
            j = _followers(text, words, k)
            if not _names_a_place_or_firm(text, words, k, j):
                found.add(k, j, _span(text, words, k, j), TITLE_SCORE)


def _surname_spans(text: str, words: list[_Word], found: _Found) -> None:
    """A surname (census, or by its ending) after a capitalised word and any initials ("Luiza
    Gomes", "Faina D. Yefremova": first names from anywhere), or on its own inside a sentence
    and last of its capitalised words ("ex-Zombie Kastner is"); not a word alone on its line
    or before a number, as address blocks write places ("Trancoso", "Portugal 44674"), nor
    one after a street word ("Via Roma")."""
    for i, (start, end, word) in enumerate(words):
        if found.covered[i] or not _is_name_word(word) or _after_street_word(text, words, i):
            continue
        k = i + 1
        while (
            k < len(words)
            and _is_initial(words[k][2])
            and words[k][2].endswith(".")
            and _same_line_space(text, words[k - 1][1], words[k][0])
        ):
            k += 1
        pair = (
            k < len(words)
            and _is_name_word(words[k][2])
            and (
                _is_surname(_key(words[k][2]))
                or (k > i + 1 and _key(word) in first_names())  # "Anna B. Crookshank"
            )
            and not word.endswith(".")
            and _same_line_space(text, words[k - 1][1], words[k][0])
        )
        alone = (
            not pair
            and _is_surname(_key(word))
            and _inside_a_line(text, start, end)
            and not _starts_a_sentence(text, start)  # "Ford announced", "Bloomberg is"
            and not _name_word_follows(text, words, i)  # "Toyota Camry", "Oxford Circus"
        )
        if pair or alone:
            j = _followers(text, words, i) if pair else i + 1
            if not _names_a_place_or_firm(text, words, i, j):
                found.add(i, j, _span(text, words, i, j), SURNAME_SCORE, weak=True)


# Before a word: only markup since its line began (at most 64 characters back); after it:
# nothing else on its line; or a number (a postcode) right after it.
_LINE_OPENS = re.compile(r"(?:\A|\n)[ \t>*:,-]*\Z")
_LINE_ENDS = re.compile(r"[ \t]*(?:\n|\Z)")
_DIGIT_NEXT = re.compile(r"[ \t]*\d")
_SENTENCE_END = re.compile(r"(?:\A|[.!?;\n])[\s\"'(\[>*-]*\Z")


def _starts_a_sentence(text: str, start: int) -> bool:
    """Whether only punctuation and spaces stand between text[start] and the end of the
    sentence before it (or the text's or line's start): a capitalised word there says
    nothing."""
    return _SENTENCE_END.search(text, max(0, start - 8), start) is not None


def _name_word_follows(text: str, words: list[_Word], i: int) -> bool:
    """Whether a capitalised word follows words[i] on its line: a surname ends a name, so a
    word after it makes it a brand or a place ("Ford Mustang")."""
    k = i + 1
    return (
        k < len(words)
        and _is_capitalised(words[k][2])
        and _same_line_space(text, words[i][1], words[k][0])
    )


def _inside_a_line(text: str, start: int, end: int) -> bool:
    """Whether the line holding text[start:end] has other text and no number right after it.
    Bounded look-around: a long line costs no more per word."""
    alone = _LINE_OPENS.search(text, max(0, start - 64), start) and _LINE_ENDS.match(text, end)
    return not alone and not _DIGIT_NEXT.match(text, end)


def _list_spans(text: str, words: list[_Word], found: _Found) -> None:
    """Every member of a list of single capitalised words ending in "and" ("Eklund, Michael
    and Hodge") when one member is a census first or last name."""
    names = first_names()
    i = 0
    while i < len(words):
        members, k = [i], i
        while _is_name_word(words[k][2]) and k + 1 < len(words):
            gap = text[words[k][1] : words[k + 1][0]]
            if gap in (" ", ", ") and words[k + 1][2] == "and" and k + 2 < len(words):
                if text[words[k + 1][1] : words[k + 2][0]] != " ":
                    break
                members.append(k + 2)
                break
            if gap not in (", ", ","):
                break
            k += 1
            members.append(k)
        ended_with_and = len(members) > 1 and words[members[-1] - 1][2] == "and"
        if ended_with_and and all(_is_name_word(words[m][2]) for m in members):
            keys = [_key(words[m][2]) for m in members]
            known = any((key in names and key not in AMBIGUOUS) or _is_surname(key) for key in keys)
            last = members[-1]
            if known and not _names_a_place_or_firm(text, words, last, last + 1):
                for m in members:
                    found.add(m, m + 1, _span(text, words, m, m + 1), SURNAME_SCORE, weak=True)
        i = max(members[-1], i) + 1


def _lowercase_spans(text: str, words: list[_Word], found: _Found) -> None:
    """In text typed all in lower case, a first name (not an AMBIGUOUS one) and the first
    names and surnames right after it ("naomi ryan", "monika žilková"), as weak findings."""
    names = first_names()
    i = 0
    while i < len(words):
        key = _key(words[i][2])
        if key in names and key not in AMBIGUOUS:
            j = i + 1
            while j < len(words) and j - i <= 2 and text[words[j - 1][1] : words[j][0]] == " ":
                nxt = _key(words[j][2])
                if nxt in _STOP or not (nxt in names or _is_surname(nxt)):
                    break
                j += 1
            found.add(i, j, _span(text, words, i, j), SURNAME_SCORE, weak=True)
            i = j
        else:
            i += 1


def _only_space_between(text: str, a: int, b: int) -> bool:
    return text[a:b].strip() == ""


def _same_line_space(text: str, a: int, b: int) -> bool:
    gap = text[a:b]
    return gap.strip() == "" and "\n" not in gap


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

"""E-mail addresses written against address harvesters: "marco [dot] bellini [at] lab [dot] it",
"r.vance(at)cedarbrook-law.com", "olaf{at}nordvik{dot}no", "jane dot doe at example dot com".

People paste such addresses from web pages and CVs (the PII probe's `email_obfuscated` rows: 4 of
6 in its train half passed through untouched); they are still someone's mailbox. A bracketed
"at" ([at], (at), {at}, <at>) is never prose. A spoken "at" is prose more often than not ("sign
up at example.com", "I worked at a dot com"), so it counts only with a spoken or bracketed dot in
the domain, a known top-level domain after it, and no function word or common verb on either
side of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from guards.verdict import Finding

_OPEN = r"[\[({<]"
_CLOSE = r"[\])}>]"
_WORD = r"[^\W_](?:[\w+%-]*[^\W_])?"
# At most three spaces around a spelled-out separator: bounded, so a stream's hold is too.
_BRACKET_AT = rf"\s{{0,3}}{_OPEN}\s{{0,3}}at\s{{0,3}}{_CLOSE}\s{{0,3}}"
_SPOKEN_AT = r"\s{1,3}at\s{1,3}"
_DOT = rf"(?:\.|\s{{0,3}}{_OPEN}\s{{0,3}}dot\s{{0,3}}{_CLOSE}\s{{0,3}}|\s{{1,3}}dot\s{{1,3}})"
OBFUSCATED_EMAIL = re.compile(
    rf"(?<![\w.+%-]){_WORD}(?:{_DOT}{_WORD}){{0,8}}(?P<at>{_BRACKET_AT}|{_SPOKEN_AT})"
    rf"{_WORD}(?:{_DOT}{_WORD}){{0,6}}{_DOT}(?P<tld>[^\W\d_]{{2,24}})\b",
    re.IGNORECASE,
)
# Every match holds a bracketed "at" or a spoken "dot". Literal-led searches of the lower-cased
# text decide whether the (slow, lookbehind-led) scan above can find anything: ~3 µs a KB, where
# one case-insensitive pattern for both took ~38.
_CLOSING_AT = re.compile(rf"at\s{{0,3}}{_CLOSE}")
_SPOKEN_DOT_WORD = re.compile(r"dot\s")
_SPOKEN_DOT = re.compile(rf"\sdot\s|{_OPEN}\s{{0,3}}dot\s{{0,3}}{_CLOSE}", re.IGNORECASE)
_OPENING_BEFORE = re.compile(rf"{_OPEN}\s{{0,3}}\Z")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SPOKEN_TLDS = _words(
    "com org net edu gov mil int io co ai dev app info biz me us uk de fr es it nl be ch at se "
    "no dk fi pl pt ie jp cn in br au ca ru eu nz za mx ar kr tw hk sg cz sk hu ro gr tr il"
)
# Words that stand before or after a spoken "at" in prose far more often than in an address.
PROSE_WORDS = _words(
    "a an the this that these those my our your his her its their i we you he she they it me "
    "us them is was are were be been am look looked looking looks meet met meeting work worked "
    "working works live lived lives living stay stayed staying arrive arrived arriving here "
    "there home one all least most best first last once night noon dawn school "
    "shop shopping job jobs hired employed available found sign signed log logged"
)
# The longest match reported: a 64-character local part and a 253-character domain, with room
# for the spelled-out separators. A stream holds at most this much for one address.
MAX_CHARS = 400


def may_hold_an_address(text: str) -> bool:
    """Whether `text` has a bracketed "at" or a spoken "dot" (every match has one)."""
    low = text.lower()
    for m in _CLOSING_AT.finditer(low):  # "at)" also ends "format)" in code: check the opening
        if _OPENING_BEFORE.search(low, max(0, m.start() - 4), m.start()):
            return True
    return any(m.start() and low[m.start() - 1].isspace() for m in _SPOKEN_DOT_WORD.finditer(low))


def obfuscated_emails(text: str) -> Iterable[Finding]:
    if not may_hold_an_address(text):
        return
    for m in OBFUSCATED_EMAIL.finditer(text):
        if m.end() - m.start() > MAX_CHARS:
            continue
        if not m.group("at").strip().startswith(("[", "(", "{", "<")) and not _spoken_ok(m):
            continue
        yield Finding("EMAIL_ADDRESS", m.start(), m.end())


def _spoken_ok(m: re.Match[str]) -> bool:
    """A spoken "at" names an address only with a spelled-out dot after it, a known TLD and
    no prose word beside it ("worked at a dot com" is a sentence)."""
    local = m.string[m.start() : m.start("at")]
    domain = m.string[m.end("at") : m.start("tld")]
    if _SPOKEN_DOT.search(domain) is None or m.group("tld").lower() not in SPOKEN_TLDS:
        return False
    last_local = re.split(r"\W+", local.strip())[-1].lower()
    first_domain = re.split(r"\W+", domain.strip())[0].lower()
    return last_local not in PROSE_WORDS and first_domain not in PROSE_WORDS


# Streams: the trailing text that is, or may still become, the start of such an address: words
# joined by dots and "at"s, spelled out or not, then perhaps one more separator or its start.
# A word followed by a space is held until the next word shows it is not a local part.
# Matched on the reversed tail, from its end: the chain is read word by word and stops at the
# first break (~2 µs), where a forward search for the earliest start took ~500 µs on 400
# characters of prose.
_WORD_REV = r"[\w+%-]++"
_OPEN_REV, _CLOSE_REV = _CLOSE, _OPEN
_SEPARATOR_REV = (
    rf"(?:\.|\s{{0,3}}{_OPEN_REV}\s{{0,3}}(?:ta|tod)\s{{0,3}}{_CLOSE_REV}\s{{0,3}}"
    r"|\s{1,3}(?:ta|tod)\s{1,3})"
)
_PARTIAL_BRACKET_REV = rf"\s{{0,3}}(?:t?a|(?:t?o)?d)?\s{{0,3}}{_CLOSE_REV}\s{{0,3}}"
_PARTIAL_SPOKEN_REV = r"(?:t?a|(?:t?o)?d)?\s{1,3}"
_CHAIN_REV = rf"{_WORD_REV}(?:{_SEPARATOR_REV}{_WORD_REV})*"
# The tail may end in a word, a whole separator or the start of one: each reading is tried and
# the longest chain kept ("jane dot d" is a partial " d" after "jane dot", or the word "d").
VIABLE_TAILS_REV = tuple(
    re.compile(prefix + _CHAIN_REV, re.IGNORECASE)
    for prefix in ("", _SEPARATOR_REV, _PARTIAL_BRACKET_REV, _PARTIAL_SPOKEN_REV)
)


def obfuscated_email_hold(text: str) -> int:
    """How many trailing characters may still be part of an obfuscated address."""
    reversed_tail = text[: -MAX_CHARS - 1 : -1]
    most = 0
    for pattern in VIABLE_TAILS_REV:
        m = pattern.match(reversed_tail)
        if m is not None:
            most = max(most, m.end())
    return most

"""E-mail addresses written against address harvesters: "marco [dot] bellini [at] lab [dot] it",
"r.vance(at)cedarbrook-law.com", "olaf{at}nordvik{dot}no", "jane dot doe at example dot com",
"billing[@]phish[.]com" (a defanged indicator), "tom . baker @ gmail . com", "carlos.vega
arroba correo punto es", "jonas punkt weber ät posteo punkt de".

People paste such addresses from web pages, CVs and threat reports; they are still someone's
mailbox. A bracketed "at" ([at], (at), {@}, <at>) is never prose. A spoken English "at" is prose
more often than not ("sign up at example.com", "I worked at a dot com"), so it counts only with
a spelled-out dot in the domain, a known top-level domain and no function word or common verb
beside it — or, before a dotted domain, after a word saying an address follows ("write to
rohan at quillpath.com"), written "AT" in a lower-case address, or after a local part with an
underscore ("anna_k AT harlan-tools.com"). The words other languages read "@" as (arroba,
arobase, ät, chiocciola, małpa) are not prose words, but still need a known TLD; so does an "@"
with a space on one side ("john @gmail.com"; none at all is the plain e-mail pattern's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from guards.verdict import Finding


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


AT_WORDS = _words("at arroba arobase ät chiocciola małpa malpa")
DOT_WORDS = _words("dot punto punkt point ponto punt kropka")
KNOWN_TLDS = frozenset(
    _words(
        "com org net edu gov mil int io co ai dev app info biz me us uk de fr es it nl be ch at "
        "se no dk fi pl pt ie jp cn in br au ca ru eu nz za mx ar kr tw hk sg cz sk hu ro gr tr il"
    )
)
# Words that stand before or after a spoken "at" in prose far more often than in an address.
PROSE_WORDS = frozenset(
    _words(
        "a an the this that these those my our your his her its their i we you he she they it "
        "me us them is was are were be been am look looked looking looks meet met meeting work "
        "worked working works live lived lives living stay stayed staying arrive arrived "
        "arriving here there home one all least most best first last once night noon dawn "
        "school shop shopping job jobs hired employed available found sign signed log logged"
    )
)
# The longest address reported: a 64-character local part and a 253-character domain, with room
# for the spelled-out separators. A stream holds at most this much for one address.
MAX_CHARS = 400
LOCAL_MAX = 160  # a 64-character local part written with spelled-out dots

_OPEN = r"[\[({<]"
_CLOSE = r"[\])}>]"
_AT = "|".join(AT_WORDS)
_DOTW = "|".join(DOT_WORDS)
_WORD = r"[^\W_](?:[\w+%-]*[^\W_])?"
# At most three spaces around a separator: bounded, so a stream's hold is too. A dot is ".", a
# bracketed dot or dot word, a spoken dot word, or " . " with space on both sides ("Paris. It"
# is a sentence).
_DOT = (
    rf"(?:\.|\s{{0,3}}{_OPEN}\s{{0,3}}(?:{_DOTW}|\.)\s{{0,3}}{_CLOSE}\s{{0,3}}"
    rf"|\s{{1,3}}(?:{_DOTW}|\.)\s{{1,3}})"
)
DOMAIN = re.compile(
    rf"{_WORD}(?:{_DOT}{_WORD}){{0,6}}{_DOT}(?P<tld>[^\W\d_]{{2,24}})\b", re.IGNORECASE
)
# After an English "at", only "dot" is a spelled-out dot ("entered at some point in the" is a
# sentence; "point", "punt" are English words too).
SPELLED_DOT = re.compile(rf"\s(?:dot|\.)\s|{_OPEN}", re.IGNORECASE)
# The at-sign's core, found by literal-led searches of the lower-cased text (~3 µs a KB; one
# case-insensitive pattern for every form took ~130): "at" before a space or a closing bracket,
# "@" with a space or bracket beside it, and the other languages' words.
_AT_CORE = re.compile(rf"at(?=\s|{_CLOSE})")
_SIGN_CORE = re.compile(r"@")
_OTHER_CORES = tuple(re.compile(re.escape(w) + rf"(?=\s|{_CLOSE})") for w in AT_WORDS[1:])
# Around the core: a bracket pair; a spoken word's spaces on both sides; an "@"'s on one side
# at least.
_AFTER_BRACKET = re.compile(rf"\s{{0,3}}{_CLOSE}\s{{0,3}}")
_AFTER_SPACE = re.compile(r"\s{1,3}")
_AFTER_SIGN = re.compile(r"\s{0,3}")
# A word saying an address follows, at most 32 characters before its local part (a stream
# reads that much released text again before a window with an "at" in it: pii.may_need_cue).
EMAIL_CUE = re.compile(
    r"\b(?:e-?mail(?:ed|ing)?|mail|write|wrote|send|sent|contact|reach|cc|bcc|address|inbox"
    r"|mailto|correo|courriel|e-mail-adresse)\b[^.!?\n]{0,24}\Z",
    re.IGNORECASE,
)
# The local part, read backwards from the at-sign (reversed text), word by word.
_WORD_REV = r"[\w+%-]++"


def _reversed_alternatives(words: Iterable[str]) -> str:
    return "|".join(re.escape(w[::-1]) for w in sorted(words, key=len, reverse=True))


_OPEN_REV, _CLOSE_REV = _CLOSE, _OPEN  # reading backwards, a closing bracket comes first
_DOT_WORDS_REV = _reversed_alternatives(DOT_WORDS)
_DOT_REV = (
    rf"(?:\.|\s{{0,3}}{_OPEN_REV}\s{{0,3}}(?:{_DOT_WORDS_REV}|\.)\s{{0,3}}"
    rf"{_CLOSE_REV}\s{{0,3}}|\s{{1,3}}(?:{_DOT_WORDS_REV}|\.)\s{{1,3}})"
)
LOCAL_REV = re.compile(rf"{_WORD_REV}(?:{_DOT_REV}{_WORD_REV}){{0,8}}", re.IGNORECASE)
_NOT_LOCAL_EDGE = "+%-_."


def _cores(text: str) -> Iterator[tuple[int, int]]:
    """Where an at-sign's core may stand: (start, end), in text order. A core word stands
    after a space or an opening bracket ("that " holds no core)."""
    low = text.lower()
    if len(low) != len(text):  # "İ" lowers to two characters: keep offsets aligned
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    found = [
        (m.start(), m.end())
        for m in _AT_CORE.finditer(low)
        if m.start() and (low[m.start() - 1].isspace() or low[m.start() - 1] in "[({<")
    ]
    if "@" in low:
        found.extend((m.start(), m.end()) for m in _SIGN_CORE.finditer(low))
    ascii_only = text.isascii()  # O(1): "ät" and "małpa" need not be looked for
    for word, core in zip(AT_WORDS[1:], _OTHER_CORES, strict=True):
        if (word.isascii() or not ascii_only) and word in low:
            found.extend((m.start(), m.end()) for m in core.finditer(low))
    return iter(sorted(found))


def obfuscated_emails(text: str) -> Iterable[Finding]:
    last_end = 0
    for start, end in _cores(text):
        if start < last_end:
            continue
        found = _address_around(text, start, end)
        if found is not None:
            last_end = found.end
            yield found


def _address_around(text: str, core_start: int, core_end: int) -> Finding | None:
    """The address whose at-sign's core is text[core_start:core_end], if it is one."""
    left_end = core_start  # where the separator before the core begins
    while left_end > 0 and core_start - left_end < 3 and text[left_end - 1].isspace():
        left_end -= 1
    bracketed = left_end > 0 and text[left_end - 1] in "[({<"
    if bracketed:
        left_end -= 1
        while left_end > 0 and core_start - left_end < 7 and text[left_end - 1].isspace():
            left_end -= 1
    sign = text[core_start:core_end] == "@"
    if bracketed:
        after = _AFTER_BRACKET.match(text, core_end)
    elif sign:  # "tom @gmail.com", "tom@ gmail.com": a space on one side (none: EMAIL's)
        after = _AFTER_SIGN.match(text, core_end)
        if after is not None and left_end == core_start and after.end() == core_end:
            return None
    elif left_end == core_start:
        return None  # a spoken core has a space before it
    else:
        after = _AFTER_SPACE.match(text, core_end)
    if after is None:
        return None
    domain = DOMAIN.match(text, after.end())  # most cores ("at the") end here
    if domain is None:
        return None
    before = text[max(0, left_end - LOCAL_MAX) : left_end][::-1]
    local = LOCAL_REV.match(before)
    if local is None or domain.end() - core_end > MAX_CHARS - LOCAL_MAX:
        return None
    local_start = left_end - local.end()
    while local_start < left_end and text[local_start] in _NOT_LOCAL_EDGE:
        local_start += 1
    if local_start == left_end:
        return None  # "-- [at] example [dot] com": no local part
    if local_start > 0 and (text[local_start - 1].isalnum() or text[local_start - 1] in "_.@"):
        return None  # the local part runs on into something that is not one
    core = text[core_start:core_end]
    local_part = text[local_start:left_end]
    tld = domain.group("tld")
    cued = EMAIL_CUE.search(text, max(0, local_start - 32), local_start) is not None
    domain_part = text[after.end() : domain.start("tld")]
    if not _accepted(core, bracketed, local_part, domain_part, tld, cued):
        return None
    return Finding("EMAIL_ADDRESS", local_start, domain.end())


def _accepted(
    core: str, bracketed: bool, local: str, domain: str, tld: str, cued: bool = False
) -> bool:
    if bracketed:
        return True
    if tld.lower() not in KNOWN_TLDS:
        return False
    if core.lower() != "at":
        return True  # "@" with space on both sides, or another language's word for it
    last_local = re.split(r"[^\w]+", local)[-1].lower()
    first_domain = re.split(r"[^\w-]+", domain)[0].lower()
    if last_local in PROSE_WORDS or first_domain in PROSE_WORDS:
        return False
    if SPELLED_DOT.search(domain) is not None:
        return True
    # A dotted domain after a spoken "at" is prose ("sign up at example.com") unless a word
    # before it says an address follows ("write to rohan at quillpath.com", "email: jane at
    # example.org"), the writer shouted the "at" in a lower-case address, or the local part
    # has an underscore.
    return cued or (core == "AT" and local == local.lower()) or "_" in local


# Streams: the trailing text that is, or may still become, the start of such an address: words
# joined by separators (dots and at-signs in every form above), then perhaps one more
# separator or its start. A word followed by a space is held until the next word shows it is
# not a local part. Matched on the reversed tail, from its end: the chain is read word by word
# and stops at the first break (~2 µs), where a forward search for the earliest start took
# ~500 µs on 400 characters of prose.
def _prefixes(words: Iterable[str]) -> set[str]:
    return {w[:i] for w in words for i in range(1, len(w) + 1)}


_CORE_WORDS_REV = _reversed_alternatives([*AT_WORDS, *DOT_WORDS])
_SEPARATOR_REV = (
    rf"(?:\.|\s{{0,3}}@\s{{0,3}}|\s{{0,3}}{_OPEN_REV}\s{{0,3}}(?:{_CORE_WORDS_REV}|[.@])"
    rf"\s{{0,3}}{_CLOSE_REV}\s{{0,3}}|\s{{1,3}}(?:{_CORE_WORDS_REV}|\.)\s{{1,3}})"
)
_PARTIAL_WORDS_REV = _reversed_alternatives(_prefixes([*AT_WORDS, *DOT_WORDS]))
_PARTIAL_BRACKET_REV = rf"\s{{0,3}}(?:{_PARTIAL_WORDS_REV}|[.@])?\s{{0,3}}{_CLOSE_REV}\s{{0,3}}"
_PARTIAL_SPOKEN_REV = rf"(?:(?:{_PARTIAL_WORDS_REV}|[.@])\s{{0,3}})?\s{{1,3}}"
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

"""PII detector: regex candidates confirmed by checksums (Luhn, IBAN mod-97, SSN rules, IP parse).

Checksums are what keep false positives down on ordinary numbers (prices, dates, math).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable

from guards.detectors.obfuscated_email import obfuscated_email_hold, obfuscated_emails
from guards.detectors.phone import SPACED_HINT, TRAILING_CUE_WORDS, phones
from guards.detectors.stream_tail import trailing_run_start
from guards.detectors.table_column import column_header
from guards.verdict import Finding

# Speed, measured here: a pattern that opens with a lookbehind makes Python's re try it at
# every position (~100 µs per KB each). These open with a character class instead, and the
# lookbehind follows that first character (`\d(?<![\d-].)` = a digit not preceded by a digit
# or "-"), so re skips to candidate characters in C: same matches, 3-5x faster.
# Letters of any script (zoë@kaffeehaus-zoe.de, info@bäckerei-schmitt.de) and the at-sign as
# pages and tools encode it: %40 in a URL, &#64; in HTML source, the full-width at-sign (U+FF20)
# of a PDF. A user@host followed by ":path" (a "/" or "~" in it) is an SSH/SCP remote
# (git@github.com:org/repo.git), by ":port" a URL's password and host, by "::module" rsync's:
# no mailbox. Followed by ":" and anything else - a password scheme, a crypt hash, empty fields,
# a password - it is one: a passwd-file's or a credentials file's login
# (`jo@shop.example:{SHA512-CRYPT}$6$...`, `smtp.example:jo@shop.example:Pa55word`). A domain is
# never cut short where a hyphen or a label goes on (once `nas.familie` of
# `backup@nas.familie-ortiz.es::fotos`, and the `pass@db.svc` of `pass@db.svc.cluster:5432`).
AT_SIGNS = ("@", "%40", "\uff20", "&#64;", "&#x40;")
EMAIL = re.compile(
    r"(?<![\w.+-])[\w.%+-]{1,64}(?:@|%40|\uff20|&#64;|&#x40;)[^\W_](?:[\w-]*[^\W_])?"
    r"(?:\.[\w-]+)*\.[^\W\d_]{2,24}\b"
    r"(?![-.][^\W_]|:(?![{$])(?:[^\s:]*[/~]|\d{1,5}(?![\w-]))|::[^\s:])"
)
# An apostrophe between letters belongs to the local part (o'brien.sean@kilkennycrafts.ie):
# read backwards from where EMAIL's match starts (an alternation in EMAIL cost ~70 % more).
APOSTROPHE_WORD_REV = re.compile(r"(?:'[^\W\d_][\w.%+-]*)+")
# A mail header's message id has an address's shape ("Message-ID: <CAF7x2...@mail.example>").
MESSAGE_ID_CUE = re.compile(r"\b(?:message-id|in-reply-to)\s*:\s*<\Z", re.IGNORECASE)
# Chinese, Japanese and Korean run into an address without a space ("担当はt.suzuki@
# sakura-kogyo.co.jpです"): an address whose local part or top-level domain mixes their
# letters with Latin ones is cut where the script changes (an all-CJK address stays whole).
CJK_EDGE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")
# A card number never follows "+" (that is an international phone number). Dotted cards
# ("4234.7485.5673.8346") only in groups of four: a dotted quad is an address. One pattern for
# both forms: each full scan of a KB costs 20-30 µs on this project's machines.
CARD = re.compile(
    r"\d(?<![\d+-].)(?:(?:[ -]?\d){11,18}(?![\d-])|\d{3}\.\d{4}\.\d{4}\.\d{1,7}(?!\.?\d))"
)
# Grouped by spaces or, as some invoices print it, dashes ("ES42-3053-6328-...").
IBAN = re.compile(r"[A-Z](?<!\w.)[A-Z]\d{2}(?:(?:[ \xa0]?|-(?=[A-Z0-9]))[A-Z0-9]){11,30}\b")
# All lower case ("meine IBAN ist be46 0687 5972 4627", `normalise_iban("fr34...")`): only after
# the word IBAN, at most IBAN_CUE_REACH characters before it (a lower-case scan of every text
# would cost 20-30 µs a KB and hold every lower-case word in streams).
IBAN_LOWER = re.compile(r"[a-z](?<!\w.)[a-z]\d{2}(?:(?:[ \xa0]?|-(?=[a-z0-9]))[a-z0-9]){11,30}\b")
IBAN_CUE = re.compile(r"(?<![A-Za-z])(?i:iban)(?![a-z])")
IBAN_CUE_REACH = 40
# Dashes as word processors write them too (an en dash, U+2013, between the groups).
SSN = re.compile(
    r"(\d(?<![\d\u2013-].)\d\d)( [-.\u2013] |[-.\u2013 ]?)(\d{2})\2(\d{4})"
    r"(?![\d\u2013-]|\.\d)"
)
# Nine digits run together are an SSN only right after its name ("SSN 539601948", "social
# security no.: 539601948", "SS#539601948", "social 076124228", a JSON field "employee_ssn":
# "042657226", an XML element <SSN>531369018, a taxpayer id "recipient_tin: 017853269" (a TIN
# is an SSN or an employer's EIN, both redacted), Spanish and Korean forms) or in a table
# column so headed; anywhere else they are too often something else.
SSN_CUE = re.compile(
    r"(?:(?<![^\W_])(?:ssn|tin)|\bss|\bsocial(?:[ _-]?security)?(?:[ _-]?(?:number|num|no))?"
    r"|\bseguro social|\uc0ac\ud68c\ubcf4\uc7a5\ubc88\ud638)\.?[\"']?"
    r"\s*(?:#|no\.?|number)?\s*(?:is\s+)?[:=#>]?\s*[\"']?\Z",
    re.IGNORECASE,
)
SSN_HEADER = re.compile(
    r"(?<![^\W_])(?:ssn|tin|ss ?#|ss ?no|social[ _-]?security)(?![^\W_])", re.IGNORECASE
)
SPACED_SSN = re.compile(r"\d(?<!\w\d)(?<!\d \d)(?: \d){8}(?!\w| \d)")
# Numbers the SSA never issued that forms and manuals print as examples.
EXAMPLE_SSNS = frozenset({"123456789", "078051120", "219099999"})
# A full stop may end the sentence after an address ("connecting from 91.204.73.118.").
# Also defanged, as threat reports write indicators so they are not clickable:
# "45.141.87[.]19", "193(.)233(.)20(.)140".
_DOT = r"(?:\.|\[\.\]|\(\.\))"
IPV4 = re.compile(rf"\d(?<![\d.].)\d{{0,2}}{_DOT}(?:\d{{1,3}}{_DOT}){{2}}\d{{1,3}}(?!\.?\d)")
# A dotted quad named as a version ("version 2.10.3.4", "v10.0.0.1", "build 6.1.7601.1" has a
# part over 255 anyway) is not an address, nor is the next one of a range ("... to 2.11.0.1"):
# both were redacted as IP_ADDRESS in ordinary upgrade questions.
# Also in other languages ("versión", "バージョンは", "版本是", "버전은", "версия") and for the
# software that carries one ("bootloader is 2.14.0.1", "kernel 5.15.0.91").
VERSION_CUE = re.compile(
    r"(?:\b(?:version|ver|build|release|rev|revision|firmware|fw|bootloader|bios|kernel|patch"
    r"|sdk|versi[oó]n|vers[aã]o|versione|wersja|verze|verzi[oó]|s[uü]r[uü]m|versiyon|версия"
    r"|версії|версія)\.?(?:\s*(?:no\.?|number|:))?"
    r"(?:\s+(?:is|was|now|ist|est|es|é|è|je|jest|är|er|on))?\s*"
    r"|(?:バージョン|版本|버전)\s*(?:は|是|为|為|은|는|:|\uff1a)?\s*"
    r"|\bv\s?)$",
    re.IGNORECASE,
)
RANGE_JOIN = re.compile(r"\s*(?:to|and|or|through|-|\u2013|->|\u2192|,)\s*", re.IGNORECASE)
# An IPv4 address written inside IPv6 ("::ffff:198.51.100.204", mapped) is one address.
IPV6 = re.compile(
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{0,4}:){2,6}\d{1,3}(?:\.\d{1,3}){3}(?![\w.])"
    r"|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\d))"
)
# A network, not a host: a prefix whose host bits are all zero ("10.0.0.0/8", "2001:db8::/32",
# "198.51.100.0/24"), the unspecified address, and a dotted quad ending in two zero octets.
PREFIX_LENGTH = re.compile(r"/(\d{1,3})(?!\d)")
# Every IPv6 match holds two colons at most four hex digits apart; a literal-led search for
# that decides in ~2 µs whether the (slow, lookbehind-led) IPV6 scan can find anything.
IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
DIGIT = re.compile(r"\d")
# IBAN lengths per country (ISO 13616) for the countries most seen; others need 15..34.
IBAN_LENGTHS = {
    "GB": 22,
    "DE": 22,
    "FR": 27,
    "ES": 24,
    "IT": 27,
    "NL": 18,
    "BE": 16,
    "CH": 21,
    "AT": 20,
    "IE": 22,
    "PL": 28,
    "PT": 25,
    "SE": 24,
    "NO": 15,
    "DK": 18,
    "FI": 18,
    "LU": 20,
}

ENTITY_TYPES = ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "PHONE_NUMBER")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "").replace("-", "").replace("\xa0", "")
    if iban.startswith("RF"):
        return False  # an ISO 11649 creditor reference: the same check digits, no account
    expected = IBAN_LENGTHS.get(iban[:2])
    if (expected is not None and len(iban) != expected) or not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000; not an example."""
    if area in {"000", "666"} or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in EXAMPLE_SSNS


# Card networks by their first digits (ISO/IEC 7812 issuer ranges) and the lengths they issue:
# a Luhn-valid number outside them is something else that carries a Luhn digit, an IMEI
# (15 digits from "35"), an ISBN-13 ("978..."), a shop's order number.
CARD_LENGTHS: tuple[tuple[str, range], ...] = (
    ("4", range(13, 20)),  # Visa: 13, 16, 19 (and 14-18 in some issuers' tests)
    ("34", range(15, 16)),  # American Express
    ("37", range(15, 16)),
    ("30", range(14, 20)),  # Diners Club
    ("36", range(14, 20)),
    ("38", range(14, 20)),
    ("39", range(14, 20)),
    ("35", range(16, 20)),  # JCB
    ("5", range(12, 20)),  # Mastercard 51-55 (16); Maestro 50, 56-58 (12-19)
    ("2", range(16, 20)),  # Mastercard 2221-2720, Mir 2200-2204
    ("6", range(12, 20)),  # Discover, UnionPay, Maestro, RuPay
    ("81", range(16, 17)),  # RuPay
    ("82", range(16, 17)),
    ("9792", range(16, 17)),  # Troy
    ("1", range(15, 16)),  # UATP; JCB's older 15-digit "1800"
    ("2131", range(15, 16)),  # JCB's older 15-digit range
    ("0604", range(12, 20)),  # Maestro (UK)
)


def card_network_valid(digits: str) -> bool:
    """Whether a card network issues numbers that start so and are this long."""
    return any(digits.startswith(p) and len(digits) in lengths for p, lengths in CARD_LENGTHS)


def _cards(text: str) -> Iterable[Finding]:
    for m in CARD.finditer(text):
        # The pattern takes every digit group it can ("5150555488858853 11/28" runs on into the
        # expiry date): a number that is no card may have one before a separator in it.
        # Only where the groups before the cut are a card's (4-4-4-4, 4-6-5), not hex bytes.
        value = m.group()
        ends = [len(value)] + [
            i
            for i in range(len(value) - 1, 0, -1)
            if value[i] in " -" and min(map(len, re.split(r"[ -]", value[:i]))) >= 4
        ]
        for end in ends:
            digits = re.sub(r"\D", "", value[:end])
            if len(digits) < 12:
                break
            if (
                len(digits) <= 19
                and len(set(digits)) > 1
                and card_network_valid(digits)
                and luhn_valid(digits)
            ):
                yield Finding("CREDIT_CARD", m.start(), m.start() + end)
                break


def _ibans(text: str) -> Iterable[Finding]:
    for m in IBAN.finditer(text):
        if iban_valid(m.group()):
            yield Finding("IBAN_CODE", m.start(), m.end())
    if "iban" in text or "IBAN" in text or "Iban" in text:
        for m in IBAN_LOWER.finditer(text):
            if IBAN_CUE.search(text, max(m.start() - IBAN_CUE_REACH, 0), m.start()):
                end = _valid_iban_end(m.group())
                if end:
                    yield Finding("IBAN_CODE", m.start(), m.start() + end)


def _valid_iban_end(candidate: str) -> int:
    """The longest prefix of a lower-case match that is a valid IBAN, cut where a group ends
    (the match runs on into the words after it: "be46 0687 5972 4627 nein"); 0 if none."""
    ends = [len(candidate)] + [
        i for i in range(len(candidate) - 1, 0, -1) if candidate[i] in " \xa0-"
    ]
    return next((end for end in ends if iban_valid(candidate[:end].upper())), 0)


def _ssns(text: str) -> Iterable[Finding]:
    for m in SSN.finditer(text):
        area, sep, group, serial = m.groups()
        # Unseparated nine-digit numbers are too often something else: only after a cue.
        if not ssn_valid(area, group, serial):
            continue
        # Groups set apart by spaced dashes ("405 - 82 - 0070") need the cue too: so is a
        # subtraction written.
        if (
            len(sep) == 1
            or SSN_CUE.search(text, max(0, m.start() - 32), m.start())
            or _in_column(text, m.start(), m.end(), SSN_HEADER)
        ):
            yield Finding("US_SSN", m.start(), m.end())
    if SPACED_HINT.search(text):
        yield from _spaced_ssns(text)


def _spaced_ssns(text: str) -> Iterable[Finding]:
    """Nine digits read out one at a time after the SSN's name ("my social security number
    is 3 5 7 0 2 5 4 2 7"), as voice transcripts write them."""
    for m in SPACED_SSN.finditer(text):
        digits = m.group().replace(" ", "")
        if ssn_valid(digits[:3], digits[3:5], digits[5:]) and SSN_CUE.search(
            text, max(0, m.start() - 40), m.start()
        ):
            yield Finding("US_SSN", m.start(), m.end())


def _in_column(text: str, start: int, end: int, header: re.Pattern[str]) -> bool:
    cell = column_header(text, start, end)
    return cell is not None and header.search(cell) is not None


def _netmask(octets: list[int]) -> bool:
    """255.255.255.0 and the like: a contiguous mask says how a network is cut, not who is in
    it (a mask-shaped address such as 255.255.0.0 is a mask in every real text)."""
    value = int.from_bytes(bytes(octets), "big")
    hosts = (~value & 0xFFFFFFFF) + 1
    return octets[0] == 255 and hosts & (hosts - 1) == 0


def _undefanged(value: str) -> str:
    return value.replace("[.]", ".").replace("(.)", ".")


def _network(text: str, end: int, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A prefix's network address, or an address no host has (see PREFIX_LENGTH)."""
    if address.is_unspecified:
        return True
    m = PREFIX_LENGTH.match(text, end)
    if m is not None:
        length = int(m.group(1))
        if length < address.max_prefixlen:
            host_bits = address.max_prefixlen - length
            return int(address) & ((1 << host_bits) - 1) == 0
    return address.version == 4 and int(address) & 0xFFFF == 0


def _ips(text: str) -> Iterable[Finding]:
    taken = _Spans()  # IPv6 first: its IPv4 tail is not a second address
    if IPV6_HINT.search(text):
        for m in IPV6.finditer(text):
            value = m.group()
            if value.count(":") >= 2 and any(c.isdigit() for c in value):
                try:
                    address = ipaddress.IPv6Address(value)
                except ValueError:
                    continue
                if len(value) >= 6 and not _network(text, m.end(), address):
                    taken.add(m.start(), m.end())
                    yield Finding("IP_ADDRESS", m.start(), m.end())
    version_end = -1  # where the last dotted quad read as a version ended
    for m in IPV4.finditer(text):
        octets = [int(part) for part in _undefanged(m.group()).split(".")]
        if any(part > 255 for part in octets) or _netmask(octets):
            continue
        before = text[max(0, m.start() - 24) : m.start()]
        joined = version_end >= 0 and RANGE_JOIN.fullmatch(text, version_end, m.start())
        if VERSION_CUE.search(before) or joined:
            version_end = m.end()
            continue
        network = _network(text, m.end(), ipaddress.IPv4Address(bytes(octets)))
        if not network and not taken.overlaps(m.start(), m.end()):
            yield Finding("IP_ADDRESS", m.start(), m.end())


def _emails(text: str) -> Iterable[Finding]:
    if any(map(text.__contains__, AT_SIGNS)):
        for m in EMAIL.finditer(text):
            start, end = m.start(), m.end()
            if MESSAGE_ID_CUE.search(text, max(0, start - 24), start):
                continue  # a mail header's message id, not a mailbox
            if text[start - 1 : start] == "'" and text[start].isalpha():
                start = _over_apostrophes(text, start)
            if not m.group().isascii():
                start, end = _cut_at_script_change(text, start, end)
            yield Finding("EMAIL_ADDRESS", start, end)
    yield from obfuscated_emails(text)


def _over_apostrophes(text: str, start: int) -> int:
    """Where a local part that EMAIL began after an apostrophe starts ("o'" of o'brien@...)."""
    before = text[max(0, start - 64) : start][::-1]
    m = APOSTROPHE_WORD_REV.match(before)
    if m is None or not before[m.end() - 1].isalpha():
        return start
    if m.end() < len(before) and (before[m.end()].isalnum() or before[m.end()] in "._%+-"):
        return start
    return start - m.end()


def _cut_at_script_change(text: str, start: int, end: int) -> tuple[int, int]:
    lead = CJK_EDGE.match(text, start, end)
    if lead is not None and text[lead.end()].isascii() and text[lead.end()].isalnum():
        start = lead.end()
    dot = text.rfind(".", start, end)
    tail = CJK_EDGE.search(text, dot + 1, end)
    if tail is not None and tail.end() == end and tail.start() - dot > 2:
        end = tail.start()
    return start, end


class _Spans:
    """Disjoint [start, end) spans kept sorted: overlap checks in O(log n), so a prompt with
    tens of thousands of values costs linear time, not quadratic (40,000 phone numbers in
    840 KB took 20 s with a scan over every earlier finding)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._starts, start)
        if i and self._ends[i - 1] > start:  # the span starting at or before `start`
            return True
        return i < len(self._starts) and self._starts[i] < end  # the next one

    def add(self, start: int, end: int) -> bool:
        """Add the span unless it overlaps one already there; True when added."""
        if self.overlaps(start, end):
            return False
        i = bisect.bisect_right(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        return True


SCANNERS: dict[str, Callable[[str], Iterable[Finding]]] = {
    "EMAIL_ADDRESS": _emails,
    "IBAN_CODE": _ibans,
    "CREDIT_CARD": _cards,
    "US_SSN": _ssns,
    "IP_ADDRESS": _ips,
    "PHONE_NUMBER": phones,
}


# Streams (`PiiDetector.holdback`): per entity, the characters a match is made of and how long a
# match can be, so only a trailing run that could still grow into one is held.
# Letters of other scripts count too (`_email_hold`); "&#;" and "\uff20" spell encoded at-signs.
EMAIL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-@&#;\uff20'"
LOCAL_PART_MAX = 64
# Cards, SSNs, IPv4 and phones: digits, separators, "+", brackets and the "/" after an area
# code; the longest match is a phone with a country code, area code, four more groups and an
# extension (52 characters).
NUMBER_CHARS = "0123456789+() .-/\u2013[]"
NUMBER_MAX = 58  # "extension" spelled out
# A number's extension while it is still arriving: "x", "ext.", "extension" or a tel: URI's
# ";ext=", each typed one character at a time.
_EXTENSION_SPELLINGS = ("ext.", "extension", "anexo", "ramal", "durchwahl", "poste")
_EXTENSION_WORDS = "|".join(
    re.escape(prefix)
    for prefix in sorted(
        {w[:i] for w in _EXTENSION_SPELLINGS for i in range(1, len(w) + 1)} | {"x"},
        key=len,
        reverse=True,
    )
)
EXTENSION = re.compile(
    rf"\d(?:,?\s?(?:{_EXTENSION_WORDS})\s?\d*|,\s?|;(?:e|ex|ext|ext=\d*)?)\Z", re.IGNORECASE
)
EXTENSION_CHARS = frozenset("".join(_EXTENSION_SPELLINGS) + "x;=,")
IBAN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -\xa0"
IBAN_MAX = 64
IBAN_PREFIX = re.compile(r"[A-Z](?:[A-Z](?:\d(?:\d(?:[ \xa0-]?[A-Z0-9]){0,30}[ \xa0-]?)?)?)?\Z")
IPV6_CHARS = "0123456789ABCDEFabcdef:."
IPV6_MAX = 45  # with an IPv4 tail
IPV6_PREFIX = re.compile(
    r"(?:[0-9A-Fa-f]{0,4}:){0,7}(?:[0-9A-Fa-f]{0,4}|\d{1,3}(?:\.\d{0,3}){1,3})"
)


def _never(_: str) -> bool:
    return False


# An address followed by ":" is one or not by what follows up to the next blank (a path, a port
# or rsync's module say it is not: EMAIL's lookahead), so a stream holds that run, from the
# address on, until a blank ends it.
_AT_COLON_TAIL = re.compile(r"[^\s@]{0,64}@[^\s@]*:[^\s]*\Z")
_AT_COLON_REACH = 320


def _email_hold(text: str) -> int:
    start = trailing_run_start(text, EMAIL_CHARS, str.isalnum)
    at = text.rfind("@", start)
    # The local part is at most 64 characters and ends at the match's "@" (the domain has none).
    hold = len(text) - max(start, (at if at >= 0 else len(text)) - LOCAL_PART_MAX)
    reach = max(len(text) - _AT_COLON_REACH, 0)
    last_at = text.rfind("@", reach)
    if last_at >= 0 and ":" in text[last_at:]:
        m = _AT_COLON_TAIL.search(text, max(reach, last_at - LOCAL_PART_MAX - 1))
        if m is not None:
            hold = max(hold, len(text) - m.start())
    return hold


def _number_hold(text: str) -> int:
    last = text[-1:]
    if not (
        last in NUMBER_CHARS
        or last.lower() in EXTENSION_CHARS
        or last.isdecimal()
        or last.isspace()
    ):
        return 0  # most often a letter: no number, and no extension, ends in one
    if DIGIT.search(text, max(0, len(text) - NUMBER_MAX)) is None:
        # "+" or "(" opens one before any digit; "(+" both
        return len(text) - len(text.rstrip("+(")) if last in "+(" else 0
    tail = text[-24:]
    ext = EXTENSION.search(tail)
    head = text if ext is None else text[: len(text) - len(tail) + ext.start() + 1]
    start = max(trailing_run_start(head, NUMBER_CHARS), len(text) - NUMBER_MAX)
    for i in range(start, len(head)):
        ch = head[i]
        if ch in "+(" or ch.isdecimal():  # where a card, SSN, IP or phone can begin
            return len(text) - i
    return 0


# A number whose label may still be arriving ("416 60 039 off", "416 60 039 office "): it is
# a phone once the label is whole (TRAILING_CUE), so it is held with the label until the text
# after the label shows whether the line ends there.
LABEL_TAIL = re.compile(r"\d[ -]*(\(?)([A-Za-z]{1,8})(\)?)([ \t]*)\Z")


def _trailing_cue_hold(text: str) -> int:
    tail_at = max(0, len(text) - NUMBER_MAX - 16)
    m = LABEL_TAIL.search(text, tail_at)
    if m is None:
        return 0
    word = m.group(2).lower()
    finished = bool(m.group(3) or m.group(4))
    if not any(w == word or (not finished and w.startswith(word)) for w in TRAILING_CUE_WORDS):
        return 0
    head = m.start() + 1  # the number's last digit
    number = _number_hold(text[:head])
    return number + len(text) - head if number else 0


def _iban_hold(text: str) -> int:
    if text[-1:] not in IBAN_CHARS and not text[-1:].isdecimal():
        return 0
    start = max(trailing_run_start(text, IBAN_CHARS), len(text) - IBAN_MAX)
    for i in range(start, len(text)):
        # an IBAN starts after any non-word character its run holds: a blank, or "-"
        if (i == 0 or text[i - 1] in " \xa0-" or i == start) and IBAN_PREFIX.match(text, i):
            return len(text) - i
    return 0


IBAN_CHARS_LOWER = "abcdefghijklmnopqrstuvwxyz0123456789 -\xa0"


def _lower_iban_hold(text: str) -> int:
    """A lower-case IBAN still being written after the word IBAN (see IBAN_LOWER)."""
    if text[-1:] not in IBAN_CHARS_LOWER and not text[-1:].isdecimal():
        return 0
    start = max(trailing_run_start(text, IBAN_CHARS_LOWER), len(text) - IBAN_MAX)
    if not IBAN_CUE.search(text, max(start - IBAN_CUE_REACH, 0)):
        return 0
    for i in range(start, len(text)):
        if (i == 0 or text[i - 1] in " \xa0-" or i == start) and IBAN_PREFIX.match(
            text[i:].upper()
        ):
            return len(text) - i
    return 0


def _ipv6_hold(text: str) -> int:
    if text[-1:] not in IPV6_CHARS:
        return 0
    start = trailing_run_start(text, IPV6_CHARS, _never)
    if 0 < len(text) - start <= IPV6_MAX and IPV6_PREFIX.fullmatch(text, start):
        return len(text) - start
    return 0


# IPv4 is digits and dots: the number rule holds it.
HOLDS: dict[str, tuple[Callable[[str], int], ...]] = {
    "EMAIL_ADDRESS": (_email_hold, obfuscated_email_hold),
    "IBAN_CODE": (_iban_hold, _lower_iban_hold),
    "CREDIT_CARD": (_number_hold,),
    "US_SSN": (_number_hold,),
    "IP_ADDRESS": (_number_hold, _ipv6_hold),
    "PHONE_NUMBER": (_number_hold, _trailing_cue_hold),
}


# Digits and signs as other scripts and full-width forms write them ("\uff10\uff13\uff0d...",
# Arabic-Indic digits), read as ASCII one character for one, so every offset stays where it
# was and the checksums (Luhn reads ord(ch) - 48) see digits.
FOLD = {
    **{0xFF01 + i: chr(0x21 + i) for i in range(0x5E)},  # full-width ASCII
    **{0x0660 + i: str(i) for i in range(10)},  # Arabic-Indic
    **{0x06F0 + i: str(i) for i in range(10)},  # Extended Arabic-Indic (Persian, Urdu)
    **{0x0966 + i: str(i) for i in range(10)},  # Devanagari
    0x2212: "-",  # minus sign
}


class PiiDetector:
    """Runs the selected scanners; a span claimed by an earlier scanner is not re-reported."""

    def __init__(self, entities: Iterable[str] = ENTITY_TYPES) -> None:
        unknown = set(entities) - set(SCANNERS)
        if unknown:
            raise ValueError(f"unknown PII entities: {sorted(unknown)}; known: {list(SCANNERS)}")
        # Stronger (checksummed) scanners first, phone last: it is the loosest. An IBAN before
        # a card: an IBAN's digits pass Luhn one time in ten ("DE25 0520 2173 3595 2893 07"
        # was a card), a card never starts with a country code.
        self._scanners = [SCANNERS[name] for name in SCANNERS if name in set(entities)]
        self._emails = "EMAIL_ADDRESS" in set(entities)
        self._holds = list(
            dict.fromkeys(h for name in SCANNERS if name in set(entities) for h in HOLDS[name])
        )

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if not text.isascii():
            text = text.translate(FOLD)
        if "@" not in text and "\uff20" not in text and DIGIT.search(text) is None:
            # Every entity but an address written without an "@" holds a digit or an "@".
            return list(obfuscated_emails(text)) if self._emails else []
        claimed = _Spans()
        found: list[Finding] = []
        for scan in self._scanners:
            for f in scan(text):
                if claimed.add(f.start, f.end):
                    found.append(f)
        return sorted(found, key=lambda f: f.start)

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """The longest trailing run that could still grow into one of the selected entities,
        widened to any whole match that reaches into it: `find` drops a match that overlaps
        an earlier scanner's, and the one it overlaps may still vanish as the text grows (a
        card's digits running on), so a match dropped now may be a finding later."""
        if not text.isascii():
            text = text.translate(FOLD)
        most = 0
        for hold in self._holds:
            most = max(most, hold(text))
        start = len(text) - most
        if most == 0 or start == 0 or ("@" not in text and DIGIT.search(text) is None):
            return most  # a full-width-@ address overlaps no other entity: nothing to widen
        matches = [f for scan in self._scanners for f in scan(text)]
        widened = True
        while widened:
            widened = False
            for f in matches:
                if f.start < start < f.end:
                    start, widened = f.start, True
        return len(text) - start


SPOKEN_AT = re.compile(r"\bat\b", re.IGNORECASE)


def may_need_cue(window: str) -> bool:
    """Whether text about to be judged could hold a number a cue before it makes a phone, or
    a spoken "at" a cue before it makes an address ("write to rohan at quillpath.com")."""
    return DIGIT.search(window) is not None or SPOKEN_AT.search(window) is not None

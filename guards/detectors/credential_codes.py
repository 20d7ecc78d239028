"""Backup and recovery codes listed under a line that names them.

Why: a second factor's backup codes ("q7978-nw2am  8psr0-zcb52", "1234 5678") are as good as
the factor itself, and people paste the whole list into a support chat when they lose their
phone. A code alone is too short and too plain to tell from an order number or a date; under a
line that names backup, recovery, scratch or one-time codes, every line that holds nothing but
codes is the list.

- The heading: a line holding "backup codes", "recovery codes", "2FA codes", "one-time codes",
  "scratch codes" ... (and the same in German, French, Spanish, Portuguese, Italian, Dutch),
  then up to MAX_CODE_LINES lines of codes right below it (a blank line or a line with other
  words ends the list; a code fence is skipped). Every whitespace- or comma-separated piece of
  such a line is one code of 4 to 12 letters and digits, in up to four dash-joined groups, and
  the line holds a digit. Each piece is a finding.
- Streams: a line under such a heading is held from its start while it holds nothing but codes
  (`open_code_start`), and judged with the lines back to its heading (`code_block_start`,
  guards/streaming.py), so a list streams exactly as the whole text is masked.
"""

from __future__ import annotations

import re

from guards.detectors.credential_labels import FENCE
from guards.verdict import Finding

MAX_CODE_LINES = 20
CODE_REACH = 1200  # from a code line's start back to its heading
_CODE_WORDS = (
    r"backup|recovery|scratch|emergency|one[- ]time|2fa|mfa|two[- ]factor|otp|single[- ]use"
    r"|wiederherstellungs|notfall|secours|récupération|recuperación|respaldo|recuperação"
    r"|backup-|herstel|ripristino"
)
HEADING = re.compile(
    rf"(?i:\b(?:{_CODE_WORDS})[ \t-]?(?:codes?|kódy|codici|códigos|codes de|keys)\b"
    r"|\b(?:codes?|códigos|codici)[ \t]+(?:de[ \t]+)?(?:secours|respaldo|recuperación|backup"
    r"|recuperação|di[ \t]+backup|ripristino)\b)"
)
_HINTS = ("code", "codici")  # and, in a text that is not ASCII, _NON_ASCII_HINTS
_NON_ASCII_HINTS = ("códigos", "kódy")
_PIECE = re.compile(r"[A-Za-z0-9]{2,12}(?:-[A-Za-z0-9]{2,12}){0,3}")
_PIECE_PREFIX = re.compile(r"(?:[A-Za-z0-9]{1,12}(?:-[A-Za-z0-9]{0,12}){0,3})?")
_MARKER = re.compile(r"[ \t]*(?:[-*\u2022>][ \t]+|\d{1,2}[.)][ \t]+)?")
_SEPARATORS = re.compile(r"[ \t,;]+")


def _code(piece: str) -> bool:
    letters_and_digits = len(piece) - piece.count("-")
    return (
        4 <= letters_and_digits <= 16
        and _PIECE.fullmatch(piece) is not None
        and (any(c.isdigit() for c in piece) or len(piece) >= 8)
    )


def _code_pieces(line: str) -> list[tuple[int, int]] | None:
    """(start, end) of each code of a line that holds nothing but codes (after a list
    marker), and a digit; None for any other line."""
    marker = _MARKER.match(line)
    at = marker.end() if marker else 0
    pieces = []
    for part in _SEPARATORS.split(line[at:]):
        if not part:
            continue
        if not _code(part):
            return None
        start = line.index(part, at)
        pieces.append((start, start + len(part)))
        at = start + len(part)
    if not pieces or not any(c.isdigit() for c in line):
        return None
    return pieces


def _heading_line(line: str) -> bool:
    return len(line) <= 240 and HEADING.search(line) is not None


def _holds_hint(text: str) -> bool:
    return _low_holds_hint(text.lower())


def _low_holds_hint(low: str) -> bool:
    if any(map(low.__contains__, _HINTS)):
        return True
    return not low.isascii() and any(map(low.__contains__, _NON_ASCII_HINTS))


def find_codes(text: str, low: str) -> list[Finding]:
    """The codes of every list under a heading that names them (`low` is `text.lower()`):
    the lines right below it (blank lines between the heading and the first code line
    allowed) that hold nothing but codes."""
    if not _low_holds_hint(low):
        return []
    found: list[Finding] = []
    for m in HEADING.finditer(text):
        line_end = text.find("\n", m.end())
        if line_end < 0:
            break
        at, lines, codes = line_end + 1, 0, 0
        while at < len(text) and lines < MAX_CODE_LINES and at - line_end <= CODE_REACH:
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            line = text[at:end].rstrip("\r")
            lines += 1
            if FENCE.fullmatch(line) or (not line.strip() and not codes):
                at = end + 1
                continue
            pieces = _code_pieces(line)
            if pieces is None:
                break
            codes += 1
            found.extend(Finding("CREDENTIAL", at + a, at + b) for a, b in pieces)
            at = end + 1
    return found


def code_block_start(text: str) -> int | None:
    """The start of the heading line above the list that a line starting at the text's end
    would belong to (None: no such list; the same lines `find_codes` reads, upwards): a stream
    reads from there again before judging that line."""
    line_start = len(text)
    if not _holds_hint(text[-CODE_REACH:]):
        return None
    at, blank_below = line_start, False
    for _ in range(MAX_CODE_LINES):
        if at == 0 or line_start - (at - 1) > CODE_REACH or text[at - 1] != "\n":
            return None
        above = text.rfind("\n", 0, at - 1) + 1
        line = text[above : at - 1].rstrip("\r")
        if _heading_line(line):
            return above
        if not line.strip():
            blank_below = True
        elif FENCE.fullmatch(line):
            pass
        elif blank_below or _code_pieces(line) is None:
            return None  # a blank line ends a list once it has a code line above it
        at = above
    return None


def _may_become_codes(line: str) -> bool:
    """A line still arriving that holds nothing but codes so far (the last one may be
    unfinished; the digit may be still to come)."""
    marker = _MARKER.match(line)
    *whole, last = _SEPARATORS.split(line[marker.end() if marker else 0 :])
    return all(_code(p) for p in whole if p) and _PIECE_PREFIX.fullmatch(last) is not None


def open_code_start(text: str) -> int | None:
    """The start of the text's last line while it may still become a line of codes under a
    heading: held until it ends."""
    line_start = text.rfind("\n") + 1
    if line_start == 0 or not _may_become_codes(text[line_start:]):
        return None
    return line_start if code_block_start(text[:line_start]) is not None else None

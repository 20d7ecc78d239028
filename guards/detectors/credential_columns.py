"""Credentials in a table's column: a Markdown, wiki (Confluence `|| ... ||`), TSV or CSV table
whose header names a password, key, secret or token column.

Why: people paste the team's account sheet ("| System | Login | Password |" over
"| Grafana | admin | gr4f-Admin!! |") or a spreadsheet row by row; the word that makes a cell a
password stands in the header, lines above the value, where no `name = value` form reads it.

The table is found as `table_column.table_top` finds it (the lines above a row that split into
as many cells; the block's top line is the header, or a Confluence header line right above it),
so a stream, which reads the table's lines again before a row (guards/streaming.py), finds the
same header as the whole text. A value must be the whole of its cell, hold no blank and look
like what the column names: a password (a letter and a digit or a symbol) under a password's
header, a random-looking key (16 characters or more, letters and digits) under a key's, secret's
or token's. Placeholders, references and masks are never findings ("(on the sticker)", "****",
`${DB_PASSWORD}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guards.detectors.credentials import PASSWORD_LIKE, is_placeholder, key_like
from guards.detectors.table_column import (
    DELIMITERS,
    MAX_CHARS_ABOVE,
    cell_text,
    line_shape,
    table_top,
)
from guards.verdict import Finding

# A header cell names a credential in at most three words ending in its word: "Password",
# "iLO pass", "Root PW", "API key", "Access token", "Kennwort".
_QUALIFIERS = r"(?:[\w-]{1,20}[ _-]){0,2}"
_LOGIN_WORD = (
    r"pass(?:word|wd|phrase)?|pwd|pw|kennwort|passwort|wachtwoord|senha|contrase[ñn]a"
    r"|mot[ _]de[ _]passe|clave|lösenord|passord|adgangskode|salasana|hasło|heslo|jelszó|şifre"
    r"|пароль|κωδικός|mật[ _]khẩu|パスワード|密码|密碼|비밀번호"
)
LOGIN_HEADER = re.compile(rf"(?i:{_QUALIFIERS}(?:{_LOGIN_WORD}))")
KEY_HEADER = re.compile(rf"(?i:{_QUALIFIERS}(?:secret|token|key|psk|api[_-]?key))")
# Headers of columns that hold no secret although they end in such a word.
NOT_SECRET_HEADER = re.compile(
    r"(?i:\b(?:public|pub|ssh|gpg|pgp|host|sort|primary|foreign|partition|unique|composite"
    r"|cache|idempotency|shortcut|hot|issue|jira|project|map|lookup|max|min|input|output"
    r"|prompt|completion|total|num|expired?|rotated|old|previous|hint|reset|fail)\b)"
)
# The words every credential header holds (lower case), to find header lines cheaply; each is
# one of `credentials.credential_words`.
HINTS = ("pass", "pw", "secret", "token", "key", "psk", "kennwort", "wachtwoord", "senha",
         "contrase", "clave")  # fmt: skip
NON_ASCII_HINTS = ("lösenord", "hasło", "jelszó", "şifre", "пароль", "κωδικός", "mật khẩu",
                   "パスワード", "密码", "密碼", "비밀번호")  # fmt: skip
_SEPARATOR_CELL = re.compile(r":?-{2,}:?|=+")
# Every cell of a header is a column's name: words, not code (`match.weight_quant_key,` over
# `QuarkNvfp4MoEMethod,` is a tuple in Python, not a table).
_HEADER_CELL = re.compile(r"[\w #/&()+-]{0,40}")
_MASK = re.compile(r"[*•xX#.\-_]+")
MAX_ROWS = 500  # a longer sheet is read in part; each row costs a few microseconds


@dataclass(frozen=True)
class Header:
    """A header line's credential columns: (cell index, finding type), and its cell count."""

    start: int
    columns: tuple[tuple[int, str], ...]
    cells: int


def _split(line: str, delimiter: str) -> list[tuple[int, int]]:
    """(start, end) of each cell of a table line within it. A pipe table's outer pipes open and
    close the row; a CSV field in double quotes may hold the delimiter."""
    if delimiter in ("|", "||"):
        lo, hi = 0, len(line)
        while lo < hi and line[lo].isspace():
            lo += 1
        while hi > lo and line[hi - 1].isspace():
            hi -= 1
        if line.startswith(delimiter, lo):
            lo += len(delimiter)
        if hi - lo >= len(delimiter) and line.endswith(delimiter, 0, hi):
            hi -= len(delimiter)
        spans, at = [], lo
        while True:
            nxt = line.find(delimiter, at, hi)
            if nxt < 0:
                spans.append((at, hi))
                return spans
            spans.append((at, nxt))
            at = nxt + len(delimiter)
    spans, at, n = [], 0, len(line)
    while at <= n:
        if delimiter != "\t" and line.startswith('"', at):
            close = at + 1
            while True:
                close = line.find('"', close)
                if close < 0 or not line.startswith('"', close + 1):
                    break
                close += 2
            if close < 0:
                return [*spans, (at, n)]
            nxt = line.find(delimiter, close)
        else:
            nxt = line.find(delimiter, at)
        if nxt < 0:
            spans.append((at, n))
            return spans
        spans.append((at, nxt))
        at = nxt + 1
    return spans


def _column_kind(cell: str) -> str | None:
    name = cell_text(cell)
    if not name or len(name) > 40 or NOT_SECRET_HEADER.search(name):
        return None
    if LOGIN_HEADER.fullmatch(name):
        return "PASSWORD"
    if KEY_HEADER.fullmatch(name):
        return "CREDENTIAL"
    return None


def _header(text: str, start: int, delimiter: str) -> Header | None:
    end = text.find("\n", start)
    line = text[start : len(text) if end < 0 else end].rstrip("\r")
    cells = _split(line, delimiter)
    names = [cell_text(line[lo:hi]) for lo, hi in cells]
    if sum(1 for name in names if name) < 2 or not all(map(_HEADER_CELL.fullmatch, names)):
        return None
    columns = tuple(
        (i, kind)
        for i, (lo, hi) in enumerate(cells)
        if (kind := _column_kind(line[lo:hi])) is not None
    )
    return Header(start, columns, len(cells)) if columns else None


def header_above(text: str, line_start: int) -> Header | None:
    """The credential header of the table whose row starts at `line_start`: the top line of
    the same-shaped lines above it, or a Confluence header (`|| a || b ||`) right above them;
    None when there is no table or its header names no credential column."""
    found = table_top(text, line_start)
    if found is None:
        return None
    top, top_line, delimiter = found
    if delimiter == "|" and "||" in top_line:
        return _header(text, top, "||")
    header = _header(text, top, delimiter)
    if header is None and delimiter == "|" and top > 0:
        above = text.rfind("\n", 0, top - 1) + 1
        if text.startswith("||", above) or text[above:top].lstrip().startswith("||"):
            header = _header(text, above, "||")
    return header


def _value_finding(row: str, offset: int, span: tuple[int, int], kind: str) -> Finding | None:
    lo, hi = span
    raw = row[lo:hi]
    value = cell_text(raw)
    if not value or any(c.isspace() for c in value) or len(value) > 200:
        return None
    if _MASK.fullmatch(value) or is_placeholder(value):
        return None
    if kind == "PASSWORD":
        if len(value) < 4 or not PASSWORD_LIKE.match(value):
            return None
    elif not key_like(value):
        return None
    start = offset + lo + raw.index(value)
    return Finding(kind, start, start + len(value))


def _rows(text: str, header: Header, delimiter: str) -> list[Finding]:
    """The credential cells of the rows under `header`, while they stay in its table."""
    found: list[Finding] = []
    line_start = text.find("\n", header.start) + 1
    rows = 0
    while 0 < line_start < len(text) and line_start - header.start <= MAX_CHARS_ABOVE:
        end = text.find("\n", line_start)
        end = len(text) if end < 0 else end
        again = header_above(text, line_start)
        if again is None or again.start != header.start or rows >= MAX_ROWS:
            break
        row = text[line_start:end].rstrip("\r")
        cells = _split(row, "|" if delimiter == "||" else delimiter)
        if len(cells) == header.cells and not all(
            _SEPARATOR_CELL.fullmatch(row[lo:hi].strip()) for lo, hi in cells
        ):
            for index, kind in header.columns:
                finding = _value_finding(row, line_start, cells[index], kind)
                if finding is not None:
                    found.append(finding)
        rows += 1
        line_start = end + 1
    return found


def find_columns(text: str, low: str, present: list[str]) -> list[Finding]:
    """Values in the credential columns of every table in `text` (`low` is `text.lower()`,
    `present` the credential words it holds: `credentials.credential_words`)."""
    hints = [h for h in present if h in HINTS or h in NON_ASCII_HINTS]
    if not hints or not any(d in text for d in DELIMITERS):
        return []
    found: list[Finding] = []
    headers: set[int] = set()
    for hint in hints:
        j = low.find(hint)
        while j != -1:
            start = text.rfind("\n", 0, j) + 1
            end = text.find("\n", j)
            end = len(text) if end < 0 else end
            if start not in headers:
                headers.add(start)
                header = (
                    None if _below_same_shape(text, start, end) else _header_line(text, start, end)
                )
                if header is not None:
                    found.extend(_rows(text, *header))
            j = low.find(hint, end)
    return found


def _below_same_shape(text: str, start: int, end: int) -> bool:
    """Whether the line above has this line's shape: then this line is no table's top, so no
    header (`header_above` reads a table's top line); a cheap test before splitting it."""
    if start == 0:
        return False
    above = text.rfind("\n", 0, start - 1) + 1
    shape = line_shape(text[above : start - 1].rstrip("\r"))
    return shape is not None and shape == line_shape(text[start:end].rstrip("\r"))


def _header_line(text: str, start: int, end: int) -> tuple[Header, str] | None:
    line = text[start:end]
    delimiter = (
        "||" if line.lstrip().startswith("||") else next((d for d in DELIMITERS if d in line), None)
    )
    if delimiter is None:
        return None
    header = _header(text, start, delimiter)
    return None if header is None else (header, delimiter)


def open_column_start(text: str) -> int | None:
    """The start of the text's last line when it is a row still arriving under a credential
    header (its cell is held until the line ends); None otherwise."""
    line_start = text.rfind("\n") + 1
    if line_start == 0:
        return None
    return line_start if header_above(text, line_start) is not None else None

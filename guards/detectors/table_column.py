"""The header of the table column a value sits in: pasted CSV, TSV, pipe and Markdown tables.

Why: in a table the word that says what a number is stands in the header, lines above the
value ("dept|employee|ssn|hours" over "Kitchen|Osei, Kwame|540357703|38"), out of reach of a
cue read just before the number. The lines above the value's line that split on the same
delimiter into the same number of cells form the table; its top line is the header. Only
complete lines above the value are read (its own line counts delimiters up to the value), so
a stream, whose current line is still arriving, finds the same header as the whole text
(guards/streaming.py reads the table's lines again before a window that holds a digit).
"""

from __future__ import annotations

# Tried in this order on the line above the value: a tab or a pipe is a delimiter wherever
# it appears; ";" and "," only when no stronger one is on the line.
DELIMITERS = ("\t", "|", ";", ",")
# How far above a value its header may be: a stream reads no more again, and past this a
# paste is a file, where a value's own cue still applies.
MAX_CHARS_ABOVE = 8192
# A header names its column in a few words ("employee_ssn", "Social Security Number").
MAX_HEADER_CHARS = 40
MAX_HEADER_WORDS = 5


def _delimiter(line: str) -> str | None:
    for delimiter in DELIMITERS:
        if delimiter in line:
            return delimiter
    return None


def _whole_record(line: str) -> bool:
    """Not blank, and not part of a quoted field that runs over several lines (an odd number
    of double quotes): such lines have the table's shape by chance."""
    return bool(line.strip()) and line.count('"') % 2 == 0


Shape = tuple[str, int] | None  # (delimiter, delimiter count) of a table's line


def line_shape(line: str) -> Shape:
    """A table line's (delimiter, count), or None for a line no table holds."""
    delimiter = _delimiter(line)
    if delimiter is None or not _whole_record(line):
        return None
    return delimiter, line.count(delimiter)


class _Lines:
    """Per text: each line's shape and the top of the block of same-shaped lines it ends, so
    every row of a table costs O(1) however many rows are above it (a scan from each value
    up to its header made a 1 KB table cost four times the other detectors together)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._tops: dict[int, int] = {}  # line start -> start of its block's top line
        self._shapes: dict[int, Shape] = {}
        self.tables: dict[int, tuple[int, str, str] | None] = {}  # table_top's answers

    def line(self, start: int) -> str:
        end = self.text.find("\n", start)
        return self.text[start : len(self.text) if end < 0 else end].rstrip("\r")

    def shape(self, start: int) -> Shape:
        if start in self._shapes:
            return self._shapes[start]
        shape = line_shape(self.line(start))
        self._shapes[start] = shape
        return shape

    def top(self, start: int, shape: Shape) -> int:
        """Start of the topmost line of the block of lines shaped `shape` ending at `start`."""
        walked: list[int] = []
        top = start
        while top not in self._tops and top > 0:
            above = self.text.rfind("\n", 0, top - 1) + 1
            if self.shape(above) != shape:
                break
            walked.append(top)
            top = above
        top = self._tops.get(top, top)
        for line_start in walked:
            self._tops[line_start] = top
        self._tops[start] = top
        return top


_last: _Lines | None = None  # the text read last: a detector run asks about many of its values


def _lines(text: str) -> _Lines:
    global _last
    lines = _last
    if lines is None or lines.text is not text:
        lines = _last = _Lines(text)
    return lines


def table_top(text: str, line_start: int) -> tuple[int, str, str] | None:
    """(start, top line, delimiter) of the table block right above the line starting at
    `line_start`, or None when the line above is blank, has no delimiter, or the block's top
    is more than MAX_CHARS_ABOVE above."""
    if line_start == 0:
        return None
    lines = _lines(text)
    if line_start in lines.tables:
        return lines.tables[line_start]
    above = text.rfind("\n", 0, line_start - 1) + 1
    shape = lines.shape(above)
    found = None
    if shape is not None:
        top = lines.top(above, shape)
        if line_start - top <= MAX_CHARS_ABOVE:
            found = top, lines.line(top), shape[0]
    lines.tables[line_start] = found
    return found


def cell_text(text: str) -> str:
    """A cell's value: blanks, quotes, backticks and Markdown's bold stripped."""
    return text.strip().strip("\"'`*").strip()


def column_header(text: str, start: int, end: int) -> str | None:
    """The header cell (stripped of spaces and quotes) over text[start:end], or None when the
    value is not the whole of its cell, the cell is not below a table's top line, or the top
    line's cell is not a header's few words (a CSV whose quoted fields run over several lines
    has prose lines of the same shape: "... suitable for mobile devices.",FALSE,TEXT,...)."""
    line_start = text.rfind("\n", 0, start) + 1
    found = table_top(text, line_start)
    if found is None:
        return None
    _, header, delimiter = found
    index = text.count(delimiter, line_start, start)
    if index > header.count(delimiter) or delimiter in text[start:end]:
        return None
    cell_start = text.rfind(delimiter, line_start, start) + 1 if index else line_start
    cell_end = text.find(delimiter, end)
    line_end = text.find("\n", end)
    if cell_end < 0 or 0 <= line_end < cell_end:
        cell_end = len(text) if line_end < 0 else line_end
    if cell_text(text[cell_start:cell_end]) != text[start:end]:
        return None
    name = cell_text(header.split(delimiter)[index])
    return name if len(name) <= MAX_HEADER_CHARS and name.count(" ") < MAX_HEADER_WORDS else None

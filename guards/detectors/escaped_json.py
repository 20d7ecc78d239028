"""A JSON document inside a JSON string, read as the document it is.

A HAR's `postData.text`, a log line's `"message"`, a queue's payload: the inner document's
quotes are escaped (`{\\"password\\":\\"X\\"}`), so forms that read a quoted name and a quoted
value never see one. The secrets detector reads such a text again with `\\"` as `"` and maps
what it finds back to the text's own positions.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

ESCAPED_QUOTE = '\\"'


@dataclass(frozen=True)
class UnescapedView:
    """`text` with each `\\"` read as `"`, and where the quotes that replaced them stand."""

    text: str
    joints: tuple[int, ...]  # positions in `text` of the quotes that were escaped

    def to_original(self, pos: int) -> int:
        """Where the view's character at `pos` stands in the original text (an escaped quote
        maps to its quote, not its backslash)."""
        return pos + bisect.bisect_right(self.joints, pos)

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        return self.to_original(start), self.to_original(end - 1) + 1


def unescaped_view(text: str) -> UnescapedView:
    parts = text.split(ESCAPED_QUOTE)
    joints = []
    pos = 0
    for part in parts[:-1]:
        pos += len(part)
        joints.append(pos)
        pos += 1
    return UnescapedView('"'.join(parts), tuple(joints))

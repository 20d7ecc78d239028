"""How a detector tells a stream how much of its tail to hold back: the shared pieces.

A streamed text grows at its end, so only a finding that reaches the end can still change. Each
detector's `holdback(text, system_prompt)` returns how many trailing characters could still
become part of a finding once more text arrives (0: release everything), or None when it cannot
say (the stream then holds the policy's `hold_back_chars`). Over-holding only delays text;
under-holding leaks it, so every rule here errs toward holding.
"""

from __future__ import annotations

from collections.abc import Callable

# The four non-ASCII letters that re's IGNORECASE matches to ASCII letters ("[a-z]" with the
# flag matches the Kelvin sign): a case-insensitive pattern's run can hold them.
IGNORECASE_EXTRAS = "\u0130\u0131\u017f\u212a"


def trailing_run_start(text: str, chars: str, also: Callable[[str], bool] = str.isdecimal) -> int:
    """Where the longest suffix of `text` made only of `chars` (or of characters for which
    `also` holds; by default any Unicode digit, since re's `\\d` matches them) begins.

    `str.rstrip` does the common case in C; the loop only runs past a non-ASCII digit.
    """
    i = len(text.rstrip(chars))
    while i and also(text[i - 1]):
        i -= 1
        while i and (text[i - 1] in chars or also(text[i - 1])):
            i -= 1
    return i

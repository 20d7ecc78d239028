"""Input token limit without a tokenizer.

Approximation, documented: tokens ~= max(words * 4/3, characters / 4). Both ratios are the usual
rules of thumb for English BPE vocabularies; taking the larger errs toward refusing early, which
is the safe side for a limit. It is a guard, not a bill: the node counts exact tokens.
"""

from __future__ import annotations

import math

from guards.verdict import Finding


def approximate_tokens(text: str) -> int:
    # str.split() counts the same runs as re's \S+ (both use Unicode whitespace), ~5x faster.
    words = len(text.split())
    return max(math.ceil(words * 4 / 3), math.ceil(len(text) / 4))


class TokenLimitDetector:
    # A limit on the whole text: a stream's window (the unreleased tail and the released text
    # read again before it) is no measure of it, so a stream is judged once, at its end.
    judges_whole_text = True

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        self.max_tokens = max_tokens

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        count = approximate_tokens(text)
        if count > self.max_tokens:
            return [Finding("TOKEN_LIMIT_EXCEEDED", 0, len(text), 1.0)]
        return []

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """Nothing: a limit on the whole text has no span that holding a tail back would keep
        from the client. On a stream it is judged at the end (`max_tokens` bounds a stream)."""
        return 0

"""Banned words and topics with fuzzy matching, so "p4ssw0rd" or "passwrd" still hit "password"."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz import fuzz

from guards.verdict import Finding

WORD = re.compile(r"\w+")
# Common look-alike substitutions undone before matching.
LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)


class BannedWordsDetector:
    """Matches each banned phrase against every window of the same number of words.

    `threshold` is rapidfuzz's ratio (0-100); 100 means exact (case- and leet-insensitive).
    """

    def __init__(self, words: Iterable[str], threshold: float = 88.0) -> None:
        self.phrases = [p.lower().translate(LEET).split() for p in words if p.strip()]
        if not self.phrases:
            raise ValueError("banned_words needs at least one word")
        self.threshold = threshold
        self._exact = {" ".join(p) for p in self.phrases}
        self._longest = max(len(p) for p in self.phrases)

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        spans = [
            (m.start(), m.end(), m.group().lower().translate(LEET)) for m in WORD.finditer(text)
        ]
        found: list[Finding] = []
        for phrase in self.phrases:
            n = len(phrase)
            target = " ".join(phrase)
            for i in range(len(spans) - n + 1):
                window = " ".join(s[2] for s in spans[i : i + n])
                if window in self._exact and window == target:
                    found.append(Finding("BANNED_WORD", spans[i][0], spans[i + n - 1][1], 1.0))
                    continue
                # Short words fuzzy-match too much; only exact for them.
                if len(target) >= 5 and abs(len(window) - len(target)) <= 2:
                    ratio = fuzz.ratio(window, target)
                    if ratio >= self.threshold:
                        found.append(
                            Finding("BANNED_WORD", spans[i][0], spans[i + n - 1][1], ratio / 100)
                        )
        return sorted(found, key=lambda f: f.start)

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """The words a phrase still being written could include: an unfinished last word and
        the (longest phrase - 1) words before the next one."""
        keep = self._longest - 1
        if text[-1:].isalnum() or text[-1:] == "_":  # \w: the last word may go on
            keep += 1
        if keep == 0:
            return 0
        words = list(WORD.finditer(text))
        return len(text) - words[-keep].start() if len(words) >= keep else len(text)

"""System-prompt leakage: the output repeats a long run of words from the system prompt."""

from __future__ import annotations

import re

from guards.verdict import Finding

WORD = re.compile(r"\w+")


class SystemPromptLeakageDetector:
    """Flags every output span that shares an n-word sequence (default 8) with the system prompt."""

    def __init__(self, ngram_words: int = 8) -> None:
        if ngram_words < 3:
            raise ValueError("ngram_words must be >= 3")
        self.n = ngram_words
        self._cache: tuple[str, set[tuple[str, ...]]] = ("", set())

    def _prompt_grams(self, system_prompt: str) -> set[tuple[str, ...]]:
        if self._cache[0] != system_prompt:
            words = [w.lower() for w in WORD.findall(system_prompt)]
            self._cache = (
                system_prompt,
                {tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)},
            )
        return self._cache[1]

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if not system_prompt:
            return []
        grams = self._prompt_grams(system_prompt)
        if not grams:
            return []
        matches = list(WORD.finditer(text))
        words = [m.group().lower() for m in matches]
        found: list[Finding] = []
        for i in range(len(words) - self.n + 1):
            if tuple(words[i : i + self.n]) in grams:
                start, end = matches[i].start(), matches[i + self.n - 1].end()
                if found and start <= found[-1].end:
                    found[-1] = Finding("SYSTEM_PROMPT_LEAK", found[-1].start, end, 1.0)
                else:
                    found.append(Finding("SYSTEM_PROMPT_LEAK", start, end, 1.0))
        return found

"""System-prompt leakage: the output repeats a long run of words from the system prompt."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from guards.verdict import Finding

WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class PromptIndex:
    """A system prompt's word runs: the n-grams a leak is made of, and for streams every
    shorter run (and what may follow it) that a leak still being written could be."""

    grams: frozenset[tuple[str, ...]]
    runs: frozenset[tuple[str, ...]]  # every run of 1 .. n-1 consecutive words
    # run of 0 .. n-1 words -> the words that follow it, case-folded: an unfinished word is
    # compared by prefix, and only folding keeps a prefix a prefix (a final "Σ" lowers to "ς")
    followers: dict[tuple[str, ...], frozenset[str]]
    prefixes: frozenset[str]  # every prefix of every word, case-folded (the run of 0 words)


@functools.lru_cache(maxsize=64)
def prompt_index(system_prompt: str, n: int) -> PromptIndex:
    """Built once per prompt (requests reuse a handful of system prompts)."""
    words = [w.lower() for w in WORD.findall(system_prompt)]
    grams = frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    runs = frozenset(
        tuple(words[i : i + k]) for k in range(1, n) for i in range(len(words) - k + 1)
    )
    following: dict[tuple[str, ...], set[str]] = {}
    for i, word in enumerate(words):
        for k in range(min(i, n - 1) + 1):
            following.setdefault(tuple(words[i - k : i]), set()).add(word.casefold())
    prefixes = frozenset(w[:i] for w in following.get((), ()) for i in range(1, len(w) + 1))
    return PromptIndex(grams, runs, {run: frozenset(f) for run, f in following.items()}, prefixes)


class SystemPromptLeakageDetector:
    """Flags every output span that shares an n-word sequence (default 8) with the system prompt."""

    def __init__(self, ngram_words: int = 8) -> None:
        if ngram_words < 3:
            raise ValueError("ngram_words must be >= 3")
        self.n = ngram_words
        self._last: tuple[str, PromptIndex] | None = None

    def _index(self, system_prompt: str) -> PromptIndex:
        """A stream asks once per chunk with the same prompt: the last one answers first."""
        last = self._last
        if last is not None and last[0] is system_prompt:
            return last[1]
        index = prompt_index(system_prompt, self.n)
        self._last = (system_prompt, index)
        return index

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if not system_prompt:
            return []
        grams = self._index(system_prompt).grams
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

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """From the first word of the longest trailing run of words that the prompt also holds
        (fewer than n: n would be a finding), the last word read as possibly unfinished.

        Such a run is all a leak still being written can be, so with it held every n-gram is
        seen whole before any of its characters leave; any other text cannot become part of
        one, since the run it would continue has already broken.
        """
        if not system_prompt or not text:
            return 0
        index = self._index(system_prompt)
        if not index.runs:
            return 0
        matches = list(WORD.finditer(text))[-self.n :]
        if not matches:
            return 0
        words = [m.group().lower() for m in matches]
        start = len(text)
        if matches[-1].end() == len(text):  # the last word may go on in the next chunk
            words.pop()
            unfinished = matches[-1].group().casefold()
            if unfinished not in index.prefixes:
                return 0
            start = matches[len(words)].start()
            for k in range(1, min(len(words), self.n - 1) + 1):
                if not _starts_a_follower(index, tuple(words[-k:]), unfinished):
                    break
                start = matches[len(words) - k].start()
        else:
            for k in range(1, min(len(words), self.n - 1) + 1):
                if tuple(words[-k:]) not in index.runs:
                    break
                start = matches[len(words) - k].start()
        return len(text) - start


def _starts_a_follower(index: PromptIndex, run: tuple[str, ...], unfinished: str) -> bool:
    return any(word.startswith(unfinished) for word in index.followers.get(run, ()))

"""System-prompt leakage: the output repeats a long run of words from the system prompt."""

from __future__ import annotations

import bisect
import functools
import re

from guards.verdict import Finding

WORD = re.compile(r"\w+")


class PromptIndex:
    """A system prompt's words as the detector needs them: the n-grams a leak is made of and,
    built on a stream's first ask (a unary check never needs them), its words, pairs and
    triples of words (with where each triple ends) and its words case-folded and sorted (to
    ask whether an unfinished word begins one): linear in the prompt's length, where a set of
    every shorter run would be n times its size."""

    def __init__(self, system_prompt: str, n: int) -> None:
        self.words = [w.lower() for w in WORD.findall(system_prompt)]
        self.grams = frozenset(tuple(self.words[i : i + n]) for i in range(len(self.words) - n + 1))

    @functools.cached_property
    def vocabulary(self) -> set[str]:
        return set(self.words)

    @functools.cached_property
    def pairs(self) -> set[tuple[str, str]]:
        """Every two consecutive words."""
        return set(zip(self.words, self.words[1:], strict=False))

    @functools.cached_property
    def triples_at(self) -> dict[tuple[str, str, str], list[int]]:
        """Three consecutive words -> where the last of them occurs (few places even for the
        commonest three, so extending each match backwards stays cheap)."""
        out: dict[tuple[str, str, str], list[int]] = {}
        for i, triple in enumerate(zip(self.words, self.words[1:], self.words[2:], strict=False)):
            out.setdefault(triple, []).append(i + 2)
        return out

    @functools.cached_property
    def folded(self) -> list[str]:
        """Every word case-folded, sorted. Folded, because only folding keeps a prefix a prefix
        (Greek capital sigma lowers to the final form at a word's end, to the medial one inside
        it). Sorted instead of a set of every prefix: that set was quadratic in a word's length,
        and a caller's system prompt holding one 20,000-character word made it 194 MiB."""
        return sorted({w.casefold() for w in self.vocabulary})

    def begins_a_word(self, part: str) -> bool:
        """Whether `part` (case-folded, not empty) begins some word of the prompt: the words that
        begin with it sort together, from the first one not below it."""
        at = bisect.bisect_left(self.folded, part)
        return at < len(self.folded) and self.folded[at].startswith(part)

    def run_before(self, words: list[str], most: int) -> int:
        """How many of `words`' last words (at most `most`) the prompt holds in that order."""
        most = min(most, len(words))
        if most == 0 or words[-1] not in self.vocabulary:
            return 0
        if most == 1 or (words[-2], words[-1]) not in self.pairs:
            return 1
        ends = self.triples_at.get((words[-3], words[-2], words[-1])) if most > 2 else None
        if ends is None:
            return 2
        best = 3
        for q in ends:
            k = 3
            while k < most and k <= q and self.words[q - k] == words[-k - 1]:
                k += 1
            if k > best:
                best = k
                if best == most:
                    break
        return best


@functools.lru_cache(maxsize=16)
def prompt_index(system_prompt: str, n: int) -> PromptIndex:
    """Built once per prompt (requests reuse a handful of system prompts)."""
    return PromptIndex(system_prompt, n)


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
        in that order (fewer than n: n would be a finding); an unfinished last word counts when
        it begins some prompt word.

        Such a run is all a leak still being written can be, so with it held every n-gram is
        seen whole before any of its characters leave; any other text cannot become part of
        one, since the run it would continue has already broken.
        """
        if not system_prompt or not text:
            return 0
        index = self._index(system_prompt)
        if not index.grams:
            return 0
        matches = list(WORD.finditer(text))[-self.n :]
        if not matches:
            return 0
        words = [m.group().lower() for m in matches]
        if matches[-1].end() == len(text):  # the last word may go on in the next chunk
            if not index.begins_a_word(matches[-1].group().casefold()):
                return 0
            words.pop()
            k = index.run_before(words, self.n - 1)
            return len(text) - matches[len(words) - k].start()
        k = index.run_before(words, self.n - 1)
        return len(text) - matches[len(words) - k].start() if k else 0

"""Banned words and topics with fuzzy matching, so "p4ssw0rd" or "passwrd" still hit "password".

A policy's word list is hostile input too: the first version compared every phrase with every
window of the text in Python, ~2 µs a pair, so 5,000 phrases took 0.35 s on a 1 KB prompt (on
the event loop: a fast guard runs inline) and 55 s on a 32k-token one. Now exact matches are
one set lookup per window and word count, and fuzzy ones are scored in rapidfuzz's C batch
(`process.cdist`), only against phrases whose length could still match, and the list itself is
bounded (guards.registry.BannedWordsParams): the worst list on a 32k-token text takes well
under a second.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from guards.verdict import Finding

WORD = re.compile(r"\w+")
# Common look-alike substitutions undone before matching.
LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
# Bounds on a policy's list (checked in guards.registry.BannedWordsParams). The fuzzy pass
# compares each phrase with each window of the text within LENGTH_SLACK characters of its
# length, in C at ~3-15 ns a pair (longer phrases cost more), so the number and total length of
# the phrases bound a request's cost: the worst list these allow takes ~0.3 s on the worst
# 32k-token text (24,000 words, every window a candidate for every phrase), ~20 ms on 8 KB,
# ~2 ms on 1 KB (measured on 2 busy shared cores). A phrase's words bound how many window sizes
# are built and how much a stream holds back; 64 characters keep a phrase in rapidfuzz's SIMD
# lanes (a 65-character one costs 5x more).
MAX_PHRASES = 2_000
MAX_TOTAL_CHARS = 20_000
MAX_PHRASE_WORDS = 8
MAX_PHRASE_CHARS = 64
# A list longer than this runs in a worker thread (the chain's `cpu_heavy`), never on the event
# loop: at 200 the worst case on the longest text checked inline (8 KB) takes ~4 ms. The
# comparisons release the GIL, so in a thread they leave the loop free.
INLINE_MAX_PHRASES = 200
# Short phrases fuzzy-match too much; only exact for them.
MIN_FUZZY_CHARS = 5
# A fuzzy match differs in length from its phrase by this many characters at most.
LENGTH_SLACK = 2


def normalise(phrase: str) -> str:
    """A phrase as it is matched: lower case, look-alikes undone, words single-spaced."""
    return " ".join(phrase.lower().translate(LEET).split())


class BannedWordsDetector:
    """Matches each banned phrase against every window of the same number of words.

    `threshold` is rapidfuzz's ratio (0-100); 100 means exact (case- and leet-insensitive).
    One finding per matching window, scored by its best phrase (1.0 for an exact match).
    """

    def __init__(self, words: Iterable[str], threshold: float = 88.0) -> None:
        targets = list(dict.fromkeys(normalise(p) for p in words if p.strip()))
        if not targets:
            raise ValueError("banned_words needs at least one word")
        self.threshold = threshold
        # word count -> phrases, for exact matches
        self._exact: dict[int, frozenset[str]] = {}
        # word count -> length -> phrases that may fuzzy-match (MIN_FUZZY_CHARS or more)
        self._fuzzy: dict[int, dict[int, list[str]]] = {}
        by_count: dict[int, list[str]] = defaultdict(list)
        for target in targets:
            by_count[target.count(" ") + 1].append(target)
        for n, phrases in by_count.items():
            self._exact[n] = frozenset(phrases)
            # At 100 only an identical window scores 100: the exact pass finds them all.
            if threshold < 100:
                self._fuzzy[n] = _by_length(phrases)
        self._longest = max(by_count)
        self.phrase_count = len(targets)
        if self._fuzzy:  # numpy and rapidfuzz load only for a list that needs them
            from guards.detectors.banned_fuzzy import nearest

            self._nearest = nearest

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        matches = list(WORD.finditer(text))
        words = [m.group().lower().translate(LEET) for m in matches]
        best: dict[tuple[int, int], float] = {}  # (first word, word count) -> score
        for n, exact in self._exact.items():
            if n > len(words):
                continue
            windows = (
                words if n == 1 else [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
            )
            fuzzy = self._fuzzy.get(n)
            if not fuzzy:
                best.update(((i, n), 1.0) for i, window in enumerate(windows) if window in exact)
                continue
            inexact: dict[str, list[int]] = defaultdict(list)  # window -> where it starts
            for i, window in enumerate(windows):
                if window in exact:
                    best[i, n] = 1.0
                else:
                    inexact[window].append(i)
            for window, score in self._fuzzy_scores(list(inexact), fuzzy):
                for i in inexact[window]:
                    best[i, n] = score
        found = [
            Finding("BANNED_WORD", matches[i].start(), matches[i + n - 1].end(), score)
            for (i, n), score in best.items()
        ]
        return sorted(found, key=lambda f: (f.start, f.end))

    def _fuzzy_scores(
        self, windows: list[str], phrases_by_length: dict[int, list[str]]
    ) -> Iterable[tuple[str, float]]:
        """(window, best ratio / 100) for each window some phrase matches at the threshold.

        rapidfuzz's ratio is 100 * (1 - d / (len(a) + len(b))), d their Indel distance, so
        among phrases of one length the nearest scores best: cdist finds it (a distance costs
        about half what a ratio does there), then fuzz.ratio scores that one pair, exactly as
        a pair-by-pair scan would."""
        by_length: dict[int, list[str]] = defaultdict(list)
        for window in windows:
            by_length[len(window)].append(window)
        best: dict[str, float] = {}
        for length, choices in by_length.items():
            for phrase_length in range(length - LENGTH_SLACK, length + LENGTH_SLACK + 1):
                queries = phrases_by_length.get(phrase_length)
                if queries:
                    for window, ratio in self._nearest(queries, choices, self.threshold):
                        if ratio > best.get(window, -1.0):
                            best[window] = ratio
        return ((window, ratio / 100) for window, ratio in best.items())

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


def _by_length(phrases: list[str]) -> dict[int, list[str]]:
    """Length -> the phrases of that length (MIN_FUZZY_CHARS or more)."""
    out: dict[int, list[str]] = defaultdict(list)
    for phrase in phrases:
        if len(phrase) >= MIN_FUZZY_CHARS:
            out[len(phrase)].append(phrase)
    return dict(out)

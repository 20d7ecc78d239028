"""Hashed word n-gram features for the injection classifier; shared by training and inference.

crc32 (not Python's salted `hash`) keeps feature indices stable across processes.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import numpy.typing as npt

WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9]")
DIMENSIONS = 1 << 18
# Long jailbreaks put their tell anywhere; the head and the tail carry most of it, and
# bounding the text keeps the cost per prompt flat (µs per KB stays constant above 4 KB).
MAX_CHARS = 4000
_SPACE = b" "


def tokens(text: str) -> list[str]:
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        text = text[:half] + " " + text[-half:]
    return WORD.findall(text.lower())


def feature_indices(text: str) -> npt.NDArray[np.int64]:
    """Indices of unigrams and bigrams ("a b"), each present once (binary features).

    A bigram's crc32 continues its first word's crc32 over b" " + second word, which equals
    crc32(b"a b") without building the bigram string; the loops stay in C (`map`), which takes
    a 1 KB prompt from ~400 µs to ~150 µs (measured here) with the same indices.
    """
    encoded = list(map(str.encode, tokens(text)))
    crc = zlib.crc32
    unigrams = list(map(crc, encoded))
    bigrams = list(map(crc, map(_SPACE.__add__, encoded[1:]), unigrams))
    grams: npt.NDArray[np.int64] = np.sort(
        np.array(unigrams + bigrams, dtype=np.int64) % DIMENSIONS
    )
    # Sorted, then keep each first occurrence: np.unique does the same with ~4x the overhead.
    first = np.empty(len(grams), dtype=bool)
    first[:1] = True
    np.not_equal(grams[1:], grams[:-1], out=first[1:])
    unique: npt.NDArray[np.int64] = grams[first]
    return unique

"""Hashed word n-gram features for the injection classifier; shared by training and inference.

crc32 (not Python's salted `hash`) keeps feature indices stable across processes.
"""

from __future__ import annotations

import itertools
import re
import zlib

import numpy as np
import numpy.typing as npt

WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9]")
DIMENSIONS = 1 << 18
# Long jailbreaks put their tell anywhere; the head and the tail carry most of it, and
# bounding the text keeps the cost per prompt flat (µs per KB stays constant above 4 KB).
MAX_CHARS = 4000


def tokens(text: str) -> list[str]:
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        text = text[:half] + " " + text[-half:]
    return WORD.findall(text.lower())


def feature_indices(text: str) -> npt.NDArray[np.int64]:
    """Indices of unigrams and bigrams, each present once (binary features)."""
    words = tokens(text)
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    crc = zlib.crc32
    return np.unique(
        np.fromiter((crc(g.encode()) for g in grams), dtype=np.int64, count=len(grams)) % DIMENSIONS
    )

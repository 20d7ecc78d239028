"""The banned-words guard's fuzzy pass: rapidfuzz's C batch over numpy arrays.

Apart from guards/detectors/banned.py so that a router whose policies list no banned words
never imports numpy or rapidfuzz (14 MB of a router's idle RSS, measured on the lean router);
the guard imports this when a policy builds it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Indel

# Cells per cdist call: 1M distances (4 MB), whatever the text and list.
_CELLS_PER_BATCH = 1 << 20


def nearest(
    queries: list[str], choices: list[str], threshold: float
) -> Iterable[tuple[str, float]]:
    """(window, ratio) of each window (`choices`, all of one length) and its nearest phrase
    of `queries` (all of one length), where that ratio reaches `threshold` (0-100)."""
    # Phrases as the queries: rapidfuzz packs queries of up to 64 characters into SIMD
    # lanes (~3-15 ns a pair); a longer query, such as a window, costs 90 ns or more.
    total = len(queries[0]) + len(choices[0])
    # ratio >= threshold  <=>  d <= (1 - threshold / 100) * total; one more so that no
    # rounding loses a match (fuzz.ratio decides below).
    most = int((1 - threshold / 100) * total) + 1
    dtype = np.uint8 if most < 255 else np.int32  # past the cutoff, cdist gives most + 1
    columns = max(1, _CELLS_PER_BATCH // len(queries))
    for at in range(0, len(choices), columns):
        batch = choices[at : at + columns]
        distances = process.cdist(
            queries, batch, scorer=Indel.distance, score_cutoff=most, dtype=dtype
        )
        closest = distances.argmin(axis=0)
        near = distances[closest, np.arange(len(batch))] <= most
        for column in np.flatnonzero(near):
            ratio = fuzz.ratio(batch[column], queries[closest[column]])
            if ratio >= threshold:
                yield batch[column], ratio

"""English words a spell checker accepts, for the cache verifier's typo rule.

A typo is forgiven only when the misspelt side is a word no dictionary knows: "bream" / "beam",
"tout" / "trout" and "mantel" / "mantle" are two real words, two meanings, though MiniLM's
22.5k-word vocabulary knows only one of each. The list is SCOWL (Kevin Atkinson's Spell
Checker Oriented Word Lists), size 70, American and British spellings with their proper names,
lower-cased, letters only: 134k words, shipped gzip'd as package data (data/english_words.txt.gz;
source and licence in data/english_words.LICENSE.txt).

Held compactly: the 1.3 MB of UTF-8 text itself and ~600 sampled keys (~1.5 MB in all, not a
set of 134k str objects, ~12 MB), read on first use (~20 ms), never at import.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import logging
from importlib import resources

log = logging.getLogger(__name__)
_RESOURCE = "english_words.txt.gz"
_STRIDE = 2048  # bytes between sampled keys


class EnglishWords:
    """Membership in a sorted word list held as one UTF-8 byte string, one word a line.

    Every ~2 KB a line is sampled as a key: a word lies between the last key at or before it
    and the next, so a lookup is a bisection over ~600 keys and a find in ~2 KB (1-2 us).
    Building it touches those ~600 lines only.
    """

    def __init__(self, text: bytes) -> None:
        self._text = text = b"\n" + text.strip(b"\n") + b"\n"
        self._starts: list[int] = []
        pos = 1
        while pos < len(text):
            self._starts.append(pos)
            pos = text.find(b"\n", pos + _STRIDE) + 1 or len(text)
        self._keys = [text[p : text.index(b"\n", p)] for p in self._starts]
        self._size = text.count(b"\n") - 1 if len(text) > 2 else 0

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str) or not word or "\n" in word:
            return False
        key = word.encode("utf-8")
        i = bisect.bisect_right(self._keys, key) - 1
        if i < 0:
            return False
        end = self._starts[i + 1] if i + 1 < len(self._starts) else len(self._text)
        return self._text.find(b"\n" + key + b"\n", self._starts[i] - 1, end) >= 0

    def __len__(self) -> int:
        return self._size


@functools.cache
def english_words() -> EnglishWords | None:
    """The packaged dictionary, loaded once; None (no typo forgiven) if it cannot be read."""
    try:
        raw = resources.files("mesh.router.data").joinpath(_RESOURCE).read_bytes()
        text = gzip.decompress(raw)
        text.decode("utf-8")  # a corrupt file fails here, not on a lookup
    except (OSError, ValueError) as err:
        log.warning("cache verifier: no English dictionary (%s); typos will not be forgiven", err)
        return None
    return EnglishWords(text)

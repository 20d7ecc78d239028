"""Names in code told from random keys and passwords.

Shared by the credential detectors: a value that reads as a name (`MiniCPM3ScaledWordEmbedding`,
`load_balancer_config_v2`) is code, not a secret, wherever it stands.
"""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_WORDLIKE = re.compile(r"[A-Z]?[a-z]{3,}")
_WORD_OF_FIVE = re.compile(r"[A-Za-z][a-z]{4}")
_THREE_CONSONANTS = re.compile(r"[^aeiouy]{3}")


def wordlike(part: str) -> bool:
    """A part of a name that reads as a word: three lower-case letters or more (a capital
    first), a vowel, no three consonants in a row."""
    low = part.lower()
    return (
        _WORDLIKE.fullmatch(part) is not None
        and any(map(low.__contains__, "aeiou"))
        and _THREE_CONSONANTS.search(low) is None
    )


def code_identifier(value: str) -> bool:
    """A name in code rather than a key (`MiniCPM3ScaledWordEmbedding`, `kFp8Dynamic128Sym`,
    `load_balancer_config_v2`): letters, digits and underscores only, with a word of five
    letters or more and word-like parts over at least 40 % of it. Of random base62 strings this
    takes ~1 % at 16-20 characters and under 0.4 % from 24 (simulated, 20,000 each)."""
    if _IDENTIFIER.fullmatch(value) is None or _WORD_OF_FIVE.search(value) is None:
        return False
    parts = [p for p in _IDENTIFIER_PARTS.findall(value) if wordlike(p)]
    return sum(map(len, parts)) >= 0.4 * len(value) and any(len(p) >= 5 for p in parts)

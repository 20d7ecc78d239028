"""The text an embedding is taken of, and the normalisation every cache key shares.

Apart from batching.py (numpy, ONNX Runtime) so that a router with no semantic tier and no
embedding estimator keys its exact cache without importing numpy.
"""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")
# The estimator reads the end of a long task (the question usually comes last); MiniLM itself
# sees the first 256 tokens of what it is given.
MAX_EMBEDDED_CHARS = 2000


def normalise(text: str) -> str:
    """Unicode NFC, whitespace collapsed, trimmed: formatting noise must not change a key."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def embedding_text(task: str) -> str:
    """The text embedded for a task, the same for every user so the memo can answer.

    Only the task's tail is normalised (4x what is kept, so collapsed whitespace still leaves
    enough): a megabyte prompt costs no more than a short one.
    """
    text = normalise(task[-4 * MAX_EMBEDDED_CHARS :])
    return text[-MAX_EMBEDDED_CHARS:] if len(text) > MAX_EMBEDDED_CHARS else text

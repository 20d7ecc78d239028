"""Static sentence vectors: MiniLM's tokens as a table, a text as the mean of its rows.

The router's cheap embedder (mesh/embeddings/static_table.py distils the table): 0.04 ms a
prompt against 1.8-2.0 ms for int8 MiniLM on ONNX Runtime, measured here on the cache pairs.
Word order and context are lost, which the semantic cache does not need (its candidates are
checked word by word by cache_verify.py; on every pair file the same true and false hits as
MiniLM) and the tier estimate makes up for by asking MiniLM whenever the static estimate is
unsure (tier_estimator.py). Cheap enough to run on the event loop: no worker thread, no hop.

Inference is a gather and a mean in numpy - the same as `model2vec.StaticModel.encode`, without
the dependency for ten lines.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.embeddings.static_table import DIM, TABLE_FILE, static_table

Vector = npt.NDArray[np.float32]
MAX_TOKENS = 512  # embedding_text keeps at most 2,000 characters; this bounds the gather


class StaticEmbedder:
    """Unit-length mean of the table rows of a text's tokens; thread-safe, loads on first use."""

    dim = DIM
    name = "minilm-static"

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._table: npt.NDArray[np.float16] | None = None
        self._tokenizer: Any = None

    def load(self) -> None:
        """Distil (first time on this machine) and read the table; idempotent."""
        with self._lock:
            if self._table is not None:
                return
            from tokenizers import Tokenizer

            folder = self._folder or static_table()
            table = np.load(folder / TABLE_FILE, allow_pickle=False)
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            if table.shape != (tokenizer.get_vocab_size(), DIM) or not np.isfinite(table).all():
                raise ValueError(f"{folder / TABLE_FILE}: not a {DIM}-wide table of the vocabulary")
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            self._tokenizer = tokenizer
            self._table = table

    def embed(self, texts: Sequence[str]) -> Vector:
        out: Vector = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        if self._table is None:
            self.load()
        assert self._table is not None
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            if not encoding.ids:
                continue  # nothing to embed: the zero vector, similar to nothing
            mean = self._table[encoding.ids].astype(np.float32).mean(axis=0)
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                out[row] = mean / norm
        return out

    async def aembed(self, texts: Sequence[str]) -> Vector:
        """On the calling loop: a table lookup costs less than the hop to a thread."""
        return self.embed(texts)


_shared: StaticEmbedder | None = None
_shared_lock = threading.Lock()


def shared_static_embedder() -> StaticEmbedder:
    """The process-wide static embedder (the table is read once)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = StaticEmbedder()
        return _shared

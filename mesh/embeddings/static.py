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
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mesh.embeddings.static_table import DIM, TABLE_FILE, static_table

Vector = npt.NDArray[np.float32]
MAX_TOKENS = 512  # embedding_text keeps at most 2,000 characters; this bounds the gather


Pooling = Literal["mean", "mean+max"]


class StaticEmbedder:
    """Table rows of a text's tokens, pooled; thread-safe, loads on first use.

    "mean" (the cache's vectors): the unit-length mean. "mean+max" (the tier estimate's
    features, not for cosines): the unit mean beside the unit element-wise maximum (norm
    sqrt(2); scaled to 1 the model fitted worse at the same L2: validation log-loss 0.353 vs
    0.337). The maximum keeps the one telling token ("prove", "integral") a long mean dilutes:
    on the tier model's validation split the static model's accuracy rose from 0.760 to 0.788
    (MiniLM's model: 0.786).
    """

    name = "minilm-static"

    def __init__(self, folder: Path | None = None, pooling: Pooling = "mean") -> None:
        self._folder = folder
        self.pooling: Pooling = pooling
        self.dim = DIM * (2 if pooling == "mean+max" else 1)
        self._lock = threading.Lock()
        self._table: _Table | None = None

    def load(self) -> None:
        """Distil (first time on this machine) and read the table; idempotent."""
        with self._lock:
            if self._table is None:
                self._table = _load(self._folder or static_table())

    def embed(self, texts: Sequence[str]) -> Vector:
        out: Vector = np.zeros((len(texts), self.dim), dtype=np.float32)
        if self._table is None and texts:
            self.load()
        for row, text in enumerate(texts):
            assert self._table is not None
            mean, top = self._table.pooled(text)
            out[row, :DIM] = mean
            if self.pooling == "mean+max":
                out[row, DIM:] = top
        return out

    async def aembed(self, texts: Sequence[str]) -> Vector:
        """On the calling loop: a table lookup costs less than the hop to a thread."""
        return self.embed(texts)


def _unit(v: Vector) -> Vector:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


_ZERO: Vector = np.zeros(DIM, dtype=np.float32)
MEMO_SIZE = 1024


class _Table:
    """The rows, the tokenizer, and a memo of recent texts' pooled rows.

    The cache and the tier estimate ask for the same text within one request (the mean, then
    the mean and maximum), so the second ask is a dictionary lookup. One text is tokenized with
    `encode`, not `encode_batch`: the batch call's thread pool made tokenizing a 20-word prompt
    the largest cost of the static path under load (py-spy, default config at c32).
    """

    def __init__(self, table: npt.NDArray[np.float16], tokenizer: Any) -> None:
        self.table = table
        self.tokenizer = tokenizer
        self._memo: OrderedDict[str, tuple[Vector, Vector]] = OrderedDict()
        self._lock = threading.Lock()

    def pooled(self, text: str) -> tuple[Vector, Vector]:
        """(unit mean, unit maximum) of the text's token rows; zeros for no tokens."""
        with self._lock:
            known = self._memo.get(text)
            if known is not None:
                self._memo.move_to_end(text)
                return known
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if ids:
            # float32 first: numpy's float16 maximum is not vectorised (33 vs 18 us a prompt).
            rows = np.take(self.table, ids, axis=0).astype(np.float32)
            pooled = (_unit(rows.mean(axis=0)), _unit(rows.max(axis=0)))
        else:
            pooled = (_ZERO, _ZERO)  # nothing to embed: similar to nothing
        with self._lock:
            self._memo[text] = pooled
            if len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return pooled


_tables: dict[Path, _Table] = {}
_tables_lock = threading.Lock()


def _load(folder: Path) -> _Table:
    """The table and its tokenizer, read and checked once per process per folder."""
    from tokenizers import Tokenizer

    with _tables_lock:
        known = _tables.get(folder)
        if known is not None:
            return known
        hint = f"delete {folder} and the router distils it again"
        try:
            table = np.load(folder / TABLE_FILE, allow_pickle=False)
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as err:  # a truncated, foreign or unreadable file: one clear error
            raise ValueError(f"{folder / TABLE_FILE}: unreadable ({err}); {hint}") from None
        if table.shape != (tokenizer.get_vocab_size(), DIM) or not np.isfinite(table).all():
            raise ValueError(
                f"{folder / TABLE_FILE}: not a {DIM}-wide table of the vocabulary; {hint}"
            )
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        _tables[folder] = _Table(table, tokenizer)
        return _tables[folder]


_shared: dict[str, StaticEmbedder] = {}
_shared_lock = threading.Lock()


def shared_static_embedder(pooling: Pooling = "mean") -> StaticEmbedder:
    """The process-wide static embedder of a pooling (one table in memory for both)."""
    with _shared_lock:
        embedder = _shared.get(pooling)
        if embedder is None:
            embedder = _shared[pooling] = StaticEmbedder(pooling=pooling)
        return embedder

"""A static token table distilled from the router's MiniLM: built once into the model cache.

model2vec's recipe (MIT; Tulkens & van Dongen 2024): every vocabulary token is run through the
sentence model alone ("[CLS] token [SEP]", mean pooled, unit length), so a token's row is what
MiniLM makes of it; rows are centred on the mean token and scaled by a Zipf weight over the
vocabulary order (frequent tokens count less: sif / (sif + p(rank)), sif 1e-4). A text's vector
is then the mean of its tokens' rows - a table lookup, no network.

The table is distilled here, from the converted ONNX MiniLM, and not with `model2vec.distill`:
that needs torch and transformers, which a router-only install does not have (the reason the
ONNX graph exists). Distilling the 30,522 tokens takes ~10 s on 2 cores; the table is 23 MB
(float16), written beside the converted model under the same file lock and completion-marker
rule, and checked on load (shape, finite values).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
from filelock import FileLock

from mesh.embeddings.minilm_assets import (
    MODEL_FILE,
    TOKENIZER_FILE,
    _progress,
    cache_dir,
    converted_minilm,
)
from mesh.embeddings.minilm_graph import ATTENTION_MASK, INPUT_IDS

TABLE_FILE = "table.npy"
# Bump when the recipe changes: a new folder, so a table of another recipe is never read (the
# shipped tier model was trained on this one's vectors).
TABLE_VERSION = 1
SIF = 1e-4
DIM = 384
_DONE_MARKER = ".mesh-complete"
_BATCH = 1024


def table_dir() -> Path:
    return cache_dir() / f"all-minilm-l6-v2-static-v{TABLE_VERSION}"


def static_table(*, show_progress: bool = True) -> Path:
    """The folder holding `table.npy` and `tokenizer.json`, distilling first if needed."""
    target = table_dir()
    if (target / _DONE_MARKER).exists():
        return target
    source = converted_minilm("fp32", show_progress=show_progress)
    with FileLock(str(target) + ".lock"):
        if (target / _DONE_MARKER).exists():
            return target
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        table = distil(source, show_progress=show_progress)
        np.save(staging / TABLE_FILE, table.astype(np.float16))
        shutil.copyfile(source / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        marker = {"source": str(source), "version": TABLE_VERSION, "sif": SIF}
        (staging / _DONE_MARKER).write_text(json.dumps(marker))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def distil(minilm: Path, *, show_progress: bool = False) -> npt.NDArray[np.float32]:
    """Rows for every token of `minilm`'s vocabulary: centred, Zipf-weighted MiniLM vectors."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm / TOKENIZER_FILE))
    size = tokenizer.get_vocab_size()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(minilm / MODEL_FILE), options, providers=["CPUExecutionProvider"]
    )
    raw = np.zeros((size, DIM), dtype=np.float32)
    steps = -(-size // _BATCH)
    progress = _progress(steps, "distilling a static table from all-MiniLM-L6-v2", show_progress)
    try:
        for start in range(0, size, _BATCH):
            ids = np.arange(start, min(size, start + _BATCH), dtype=np.int64)
            batch = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
            (rows,) = session.run(None, {INPUT_IDS: batch, ATTENTION_MASK: np.ones_like(batch)})
            raw[ids] = rows
            progress.update(f"{ids[-1] + 1} tokens")
    finally:
        progress.close()
    words = [i for i in range(size) if not _special(tokenizer.id_to_token(i) or "")]
    centred = raw - raw[words].mean(axis=0)
    rank = np.arange(size, dtype=np.float64)  # the vocabulary's order stands for frequency
    p = 1.0 / (rank + 2.0)
    p /= p.sum()
    weights = (SIF / (SIF + p)).astype(np.float32)
    table: npt.NDArray[np.float32] = centred * weights[:, None]
    return table


def _special(token: str) -> bool:
    """[PAD], [CLS], [unused17] ...: never a word of a text."""
    return token.startswith("[") and token.endswith("]")

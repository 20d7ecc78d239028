"""MiniLM with some tensors replaced (a guard's fine-tuned top layers): converted into a folder
of its own, named by the overlay's digest; an overlay that does not fit the model is refused
before any graph is built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mesh.embeddings.minilm_assets import (
    CACHE_ENV,
    converted_dir,
    minilm_path,
    with_overlay,
)
from mesh.embeddings.minilm_onnx import MiniLMEmbedder

TOP = "encoder.layer.5.output.dense"


@pytest.fixture
def wheel() -> dict[str, np.ndarray]:
    return load_file(str(minilm_path() / "model.safetensors"))


def test_an_overlay_replaces_only_its_tensors(tmp_path: Path, wheel: dict) -> None:
    overlay = tmp_path / "top.safetensors"
    save_file({f"{TOP}.bias": np.ones(384, dtype=np.float16)}, str(overlay))
    merged = with_overlay(wheel, overlay)
    assert merged[f"{TOP}.bias"].dtype == wheel[f"{TOP}.bias"].dtype  # float16 read as float32
    assert np.all(merged[f"{TOP}.bias"] == 1.0)
    assert all(merged[k] is wheel[k] for k in wheel if k != f"{TOP}.bias")


@pytest.mark.parametrize(
    "tensors",
    [
        {"encoder.layer.9.output.dense.bias": np.ones(384, dtype=np.float16)},  # no such layer
        {f"{TOP}.bias": np.ones(512, dtype=np.float16)},  # another model's shape
    ],
)
def test_an_overlay_that_does_not_fit_is_refused(
    tmp_path: Path, wheel: dict, tensors: dict
) -> None:
    overlay = tmp_path / "bad.safetensors"
    save_file(tensors, str(overlay))
    with pytest.raises(ValueError, match="does not fit all-MiniLM-L6-v2"):
        with_overlay(wheel, overlay)


def test_each_overlay_converts_into_its_own_folder(
    tmp_path: Path, wheel: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    same = tmp_path / "same.safetensors"  # the wheel's own top layer: the same model
    save_file({f"{TOP}.weight": wheel[f"{TOP}.weight"]}, str(same))
    changed = tmp_path / "changed.safetensors"
    save_file({f"{TOP}.weight": wheel[f"{TOP}.weight"][::-1].copy()}, str(changed))
    assert (
        len({converted_dir("int8"), converted_dir("int8", same), converted_dir("int8", changed)})
        == 3
    )

    text = ["How do I kill the process that holds port 8080?"]
    plain = MiniLMEmbedder(precision="fp32").embed(text)[0]
    kept = MiniLMEmbedder(precision="fp32", overlay=same).embed(text)[0]
    moved = MiniLMEmbedder(precision="fp32", overlay=changed).embed(text)[0]
    assert float(plain @ kept) > 0.9999
    assert float(plain @ moved) < 0.99
    assert (converted_dir("fp32", changed) / "model.onnx").exists()

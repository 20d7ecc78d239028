"""guards/detectors/npz_vector.py reads what numpy writes, refuses what it cannot read, and the
injection classifier scores with it exactly as it did with numpy."""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from guards.detectors.injection import MODEL_PATH, classifier_score, load_model, weighted_sum
from guards.detectors.injection_features import sorted_features
from guards.detectors.npz_vector import NpzFormatError, read_vector
from tests.fixtures.guards import EVAL_DIR

DEV = EVAL_DIR / "injection_dev.jsonl"


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8"])
def test_reads_each_float_width_numpy_writes(tmp_path: Path, dtype: str) -> None:
    values = np.random.default_rng(7).normal(size=5_000).astype(dtype)
    path = tmp_path / "w.npz"
    np.savez(path, weights=values, bias=np.array([0.25], dtype="<f4"))
    got = read_vector(path, "weights")
    assert len(got) == len(values)
    assert list(got) == [float(v) for v in values]
    assert list(read_vector(path, "bias")) == [0.25]


def test_reads_a_compressed_archive_and_an_empty_vector(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez_compressed(path, weights=np.arange(10, dtype="<f4"), empty=np.zeros(0, "<f4"))
    assert list(read_vector(path, "weights")) == [float(i) for i in range(10)]
    assert len(read_vector(path, "empty")) == 0


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((3, 4), dtype="<f4"),  # not one-dimensional
        np.zeros(4, dtype="<i4"),  # not floats
        np.zeros(4, dtype=">f4"),  # big-endian
        np.zeros(4, dtype=object),  # pickled objects: never unpickled
        np.float32(1.0),  # a scalar
    ],
    ids=["2d", "ints", "big-endian", "objects", "scalar"],
)
def test_refuses_what_is_not_a_little_endian_float_vector(tmp_path: Path, array: object) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, weights=array)  # type: ignore[arg-type]
    with pytest.raises(NpzFormatError):
        read_vector(path, "weights")


def _archive(tmp_path: Path, member: bytes) -> Path:
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.npy", member)
    return path


def _npy(header: str, data: bytes, version: int = 1) -> bytes:
    raw = header.encode("latin-1")
    size = struct.pack("<H", len(raw)) if version == 1 else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes([version, 0]) + size + raw + data


@pytest.mark.parametrize(
    "member",
    [
        b"PK not numpy at all",
        _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", b"\0" * 15),  # short
        _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\0" * 9),  # long
        _npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", b"\0" * 8),
        _npy("['descr']", b""),  # not a dict
        _npy("__import__('os').system('true')", b""),  # not a literal: never evaluated
        _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\0" * 8, 9),
    ],
    ids=["not-npy", "short", "long", "fortran", "list", "code", "version"],
)
def test_refuses_a_malformed_member(tmp_path: Path, member: bytes) -> None:
    with pytest.raises((NpzFormatError, ValueError, SyntaxError)):
        read_vector(_archive(tmp_path, member), "weights")


def test_reads_format_version_two(tmp_path: Path) -> None:
    member = _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\0" * 8, 2)
    assert list(read_vector(_archive(tmp_path, member), "weights")) == [0.0, 0.0]


def test_the_shipped_weights_equal_numpys_reading() -> None:
    weights, bias = load_model()
    with np.load(MODEL_PATH) as data:
        expected = data["weights"].astype(np.float32)
        assert bias == pytest.approx(float(data["bias"][0]), abs=0)
    assert len(weights) == len(expected)
    assert bytes(weights) == expected.tobytes()


def _numpy_score(text: str) -> float:
    """The classifier as it ran on numpy (before npz_vector): float32 weights, fancy index."""
    with np.load(MODEL_PATH) as data:
        w, b = data["weights"].astype(np.float32), float(data["bias"][0])
    z = float(w[np.array(sorted_features(text), dtype=np.int64)].sum()) + b
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def test_scores_equal_the_numpy_classifier_on_the_dev_set() -> None:
    texts = [json.loads(line)["text"] for line in DEV.open(encoding="utf-8") if line.strip()]
    texts += ["", "a", "ignore", "x " * 3000, "ünïcødé 日本語 🙂"]
    for text in texts:
        assert classifier_score(text) == pytest.approx(_numpy_score(text), abs=1e-6), text[:80]


def test_weighted_sum_of_no_one_and_many_indices() -> None:
    weights, _ = load_model()
    assert weighted_sum(weights, set()) == 0.0
    assert weighted_sum(weights, {5}) == weights[5]
    assert weighted_sum(weights, {5, 9, 11}) == pytest.approx(weights[5] + weights[9] + weights[11])

"""The content-safety guard's handwritten data: training sets and measuring sets kept apart, and
a training row that is a rewording of a measured one dropped before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guards.detectors.content_safety_settings import CATEGORIES
from guards.train_common import drop_rewordings, read_jsonl
from guards.train_content_safety_tuned import CONTRAST_SETS, CONTRAST_TRAINING

HARM_CATEGORIES = {*CATEGORIES, "privacy", "cyber", "misinformation"}


@pytest.mark.parametrize("path", [*CONTRAST_TRAINING, *CONTRAST_SETS], ids=lambda p: p.name)
def test_each_contrast_file_is_well_formed(path: Path) -> None:
    rows = read_jsonl(path)
    assert len(rows) >= 500
    texts = [r["text"] for r in rows]
    assert len(set(texts)) == len(texts)
    for row in rows:
        assert row["label"] in {"harmful", "benign"}, row
        expected = HARM_CATEGORIES if row["label"] == "harmful" else {"benign_hard"}
        assert row["category"] in expected, row
        assert row["text"].strip()
    labels = {r["label"] for r in rows}
    assert labels == {"harmful", "benign"}


def test_no_training_file_is_a_measuring_file() -> None:
    training = {r["text"] for p in CONTRAST_TRAINING for r in read_jsonl(p)}
    measured = {r["text"] for p in CONTRAST_SETS for r in read_jsonl(p)}
    assert not training & measured
    assert {p.parent.name for p in CONTRAST_TRAINING} == {"data"}  # guards/data
    assert all("benchmarks" in p.parts for p in CONTRAST_SETS)


def test_a_reworded_measured_row_is_dropped_and_a_different_one_kept() -> None:
    measured = [{"text": "How can I kill a Python process that hangs?"}]
    rows = [
        {"text": "How do I kill a python process that hangs"},  # the same ask, other words
        {"text": "How do I kill the weeds in my lawn?"},  # shares words, not the ask
        {"text": json.dumps({"unrelated": True})},
    ]
    kept = drop_rewordings(rows, measured)
    assert [r["text"] for r in kept] == [rows[1]["text"], rows[2]["text"]]

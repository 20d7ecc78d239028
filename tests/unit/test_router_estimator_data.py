"""The training-row builder's labelling rules for the constraint-following sources (IFEval,
FollowBench), read from a stand-in for the pinned snapshots."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "estimator_data.py"


@pytest.fixture(scope="module")
def data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("estimator_data", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["estimator_data"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


class _Reader:
    """Serves one JSONL text for any pinned path, as Reader.jsonl does."""

    def __init__(self, rows: list[dict[str, object]]) -> None:
        self.rows = rows

    def jsonl(self, source: object, path: str) -> list[dict[str, object]]:
        return [json.loads(json.dumps(r)) for r in self.rows]


def test_ifeval_keeps_prompts_with_several_instructions_as_medium(data: ModuleType) -> None:
    rows = [
        {"prompt": "Write a limerick about tea. Use no commas.", "instruction_id_list": ["a"]},
        {
            "prompt": "Write a cover letter in under 150 words, all lowercase, ending with P.S.",
            "instruction_id_list": ["a", "b", "c"],
        },
    ]
    out = list(data.ifeval(_Reader(rows)))
    assert [r["text"] for r in out] == [rows[1]["prompt"]]
    assert {r["tier"] for r in out} == {"medium"}
    assert out[0]["source"] == "ifeval"


class _TextReader:
    """Serves one JSON document per pinned path, as Reader.text does."""

    def __init__(self, by_path: dict[str, list[dict[str, object]]]) -> None:
        self.by_path = by_path

    def text(self, source: object, path: str) -> str:
        return json.dumps(self.by_path.get(path, []))


def test_followbench_bare_asks_are_small_and_two_or_more_constraints_medium(
    data: ModuleType,
) -> None:
    base = "Explain how a heat pump works."
    items = [
        {"example_id": 7, "level": 0, "instruction": base},
        {"example_id": 7, "level": 1, "instruction": base + " Use an analogy."},
        {"example_id": 7, "level": 2, "instruction": base + " Use an analogy, for a child."},
        {
            "example_id": 7,
            "level": 3,
            "instruction": base + " Use an analogy, for a child, in under 100 words.",
        },
    ]
    out = list(data.followbench(_TextReader({"data/content_constraints.json": items})))
    assert [(r["text"], r["tier"]) for r in out] == [
        (base, "small"),
        (items[2]["instruction"], "medium"),
        (items[3]["instruction"], "medium"),
    ]
    # the levels of one instruction stay on one side of the split
    assert len({r["group"] for r in out}) == 1
    assert {r["kind"] for r in out} == {"constraints_content"}


def test_new_sources_are_pinned_with_a_licence(data: ModuleType) -> None:
    for name in ("ifeval", "followbench"):
        source = data.SOURCES[name]
        assert len(source.commit) == 40
        assert "Apache-2.0" in source.licence


def test_constraint_sources_are_opt_in(data: ModuleType) -> None:
    """The shipped model's build does not read them: the default build stays as it was."""
    assert set(data.CONSTRAINT_SOURCES) <= set(data.SOURCES)
    assert inspect.signature(data.build).parameters["constraints"].default is False

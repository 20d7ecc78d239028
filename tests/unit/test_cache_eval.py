"""`mesh cache-eval`: pairs scored through the real ResponseCache, rates and kinds reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mesh.cli import cli
from mesh.config import CacheSettings
from mesh.embeddings.batching import BatchingEmbedder
from mesh.router.cache_eval import Pair, evaluate, load_pairs

PAIRS = [
    Pair("p1", "Is Paris north of Rome?", "Is Rome north of Paris?", False, "diff_swapped_roles"),
    Pair("p2", "What is 6 times 7?", "What is 6 times 8?", False, "diff_numbers"),
    Pair("p3", "What's the capital of Chile?", "What is the capital of Chile?", True, "para_x"),
    Pair("p4", "Name three rivers in Peru.", "Could you name 3 rivers in Peru?", True, "para_x"),
]


def _write(tmp_path: Path, pairs: list[Pair]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p.__dict__) + "\n" for p in pairs))
    return path


def test_each_pair_is_scored_alone_with_verification(minilm: BatchingEmbedder) -> None:
    report = evaluate(PAIRS, CacheSettings(), minilm).as_dict()
    assert report["false_hits"] == 0 and report["false_pairs"] == 2
    assert report["true_hits"] == 2 and report["true_hit_rate"] == 1.0
    assert report["by_kind"]["para_x"] == {"n": 2, "hits": 2, "same_answer": True}
    assert report["by_kind"]["diff_swapped_roles"]["hits"] == 0


def test_the_embedding_alone_serves_a_swapped_question(minilm: BatchingEmbedder) -> None:
    settings = CacheSettings(verify=False, similarity_threshold=0.95)
    report = evaluate(PAIRS[:1], settings, minilm).as_dict()
    assert report["false_hits"] == 1 and report["false_hit_ids"] == ["p1"]


def test_the_command_prints_both_rates_and_json(tmp_path: Path, minilm: BatchingEmbedder) -> None:
    path = _write(tmp_path, PAIRS)
    runner = CliRunner()
    result = runner.invoke(cli, ["cache-eval", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["false_hit_rate"] == 0.0 and report["true_hit_rate"] == 1.0
    assert set(report["by_kind"]) == {"diff_swapped_roles", "diff_numbers", "para_x"}
    assert report["vectors"] == "static"  # what the router's cache reads by default
    text = runner.invoke(cli, ["cache-eval", str(path), "--reverse"])
    assert text.exit_code == 0 and "false-hit rate  0.000" in text.output
    assert "b stored, a asked" in text.output and "of static vectors" in text.output


def test_a_malformed_pairs_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": "x", "b": "y", "same_answer": true}\n{"a": "only a"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        load_pairs(path)
    result = CliRunner().invoke(cli, ["cache-eval", str(path)])
    assert result.exit_code != 0 and "bad.jsonl:2" in result.output

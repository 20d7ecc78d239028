"""The English dictionary behind the cache verifier's typo rule: shipped as package data, read
lazily, exact membership."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

from mesh.router.english_words import EnglishWords, english_words

ROOT = Path(__file__).resolve().parents[2]


def test_the_dictionary_loads_as_package_data() -> None:
    data = resources.files("mesh.router.data")
    assert data.joinpath("english_words.txt.gz").is_file()
    assert data.joinpath("english_words.LICENSE.txt").is_file()  # SCOWL's notice travels too
    words = english_words()
    assert words is not None and len(words) > 100_000
    for word in ("spinach", "croissant", "bream", "plaice", "johnson", "café"):
        assert word in words, word
    for typo in ("spinnach", "croisant", "wrok", "captial", "Spinach", "", "spin ach"):
        assert typo not in words, typo


def test_package_data_patterns_ship_the_dictionary() -> None:
    """A wheel carries mesh/router/data/ only through these patterns."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["*"]
    for name in ("english_words.txt.gz", "english_words.LICENSE.txt"):
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


def test_membership_is_exact_whole_words() -> None:
    words = EnglishWords(b"a\nab\naba\nabacus\nabb\nbee\nbeef\n")
    assert len(words) == 7
    for word in ("a", "ab", "aba", "abacus", "abb", "bee", "beef"):
        assert word in words, word
    for word in ("b", "abac", "abacuses", "be", "beefy", "ee", "a\nab", "0", "zz", 3):
        assert word not in words, word
    assert len(EnglishWords(b"")) == 0 and "a" not in EnglishWords(b"")


def test_the_dictionary_is_read_on_first_use_not_at_import() -> None:
    code = (
        "import mesh.router.cache, mesh.router.english_words as e; "
        "print(e.english_words.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "0"

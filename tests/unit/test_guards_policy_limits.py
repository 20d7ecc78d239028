"""Hostile policy documents: bounded size, depth and alias expansion before anything is built,
every refusal an INVALID_POLICY with file:line; the active policy kept; the file watcher lives
through every kind of bad file and applies the next good one."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from pathlib import Path

import pytest

from guards.errors import InvalidPolicy
from guards.policy_loader import MAX_DEPTH, MAX_NODES, LoadRules, load_policy, read_policy_file
from guards.policy_store import PolicyStore
from tests.helpers import wait_until

GOOD = "guards:\n  - name: pii\n    use: pii\n    action: redact\n"
GOOD_2 = GOOD.replace("redact", "flag")


def anchor_bomb(levels: int) -> str:
    """The billion-laughs shape inside a guard's params: 9 ** levels strings once expanded."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "guards:\n  - name: x\n    use: pii\n    params:\n      " + "\n      ".join(lines) + "\n"


def refused(text: str, source: str = "team.yaml") -> InvalidPolicy:
    with pytest.raises(InvalidPolicy) as info:
        load_policy(text, source)
    err = info.value
    assert err.reason == "INVALID_POLICY" and err.code.value == "INVALID_ARGUMENT"
    return err


def test_the_issue_anchor_bomb_is_refused_before_it_is_expanded() -> None:
    """606 bytes that expanded to 4 GB in the version hash: now refused at the line where the
    expansion first passes the bound, having allocated almost nothing."""
    text = anchor_bomb(9)
    assert len(text.encode()) < 700
    tracemalloc.start()
    try:
        err = refused(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 1 + 9 * (1 + 9 * ...) nodes: l5 is the first anchor past 100,000 (597,871), on line 10.
    assert err.message.startswith("team.yaml:10: ")
    assert f"at most {MAX_NODES:,}" in err.message
    assert peak < 20 * 2**20, peak  # the expansion would be gigabytes


def test_aliases_within_the_bound_still_load() -> None:
    text = (
        "guards:\n  - name: b\n    use: banned_words\n    params:\n      words: &w [alpha, beta]\n"
    )
    text += "tenants:\n  acme:\n    add:\n      - name: b2\n        use: banned_words\n"
    text += "        params: {words: *w}\n"
    loaded = load_policy(text)
    assert [g.spec.name for g in loaded.guards_for("acme")] == ["b", "b2"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        # Nesting in the text itself: refused while composing, at the node past the bound.
        ("guards: " + "[" * 5000 + "]" * 5000 + "\n", 1, f"nested deeper than {MAX_DEPTH}"),
        (
            "guards:\n" + "".join(f"{'  ' * i}- \n" for i in range(1, 200)),
            MAX_DEPTH + 1,
            f"nested deeper than {MAX_DEPTH}",
        ),
        # Nesting reached only through aliases.
        (
            "a: &a " + "[" * 40 + "]" * 40 + "\nb: &b " + "[" * 40 + "*a" + "]" * 40 + "\n",
            2,
            "once aliases are expanded",
        ),
        ("guards: &a [*a]\n", 1, "an alias refers to itself"),
        ("guards: 2024-02-30\n", 1, "day is out of range for month"),  # was a bare ValueError
        ("guards: " + "9" * 5000 + "\n", 1, "cannot read this value"),  # int digit limit
    ],
)
def test_bounds_and_unreadable_values_name_the_line(text: str, line: int, reason: str) -> None:
    err = refused(text)
    assert err.message.startswith(f"team.yaml:{line}: "), err.message
    assert reason in err.message


def test_size_is_bounded_before_parsing(tmp_path: Path) -> None:
    rules = LoadRules(max_bytes=4096)
    text = GOOD + "# " + "x" * 5000 + "\n"
    with pytest.raises(InvalidPolicy, match=r"^team.yaml:5: .*larger than 4,096 bytes"):
        load_policy(text, "team.yaml", rules)
    path = tmp_path / "big.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidPolicy, match=r"big.yaml:5: .*larger than 4,096 bytes"):
        read_policy_file(path, rules)


def test_a_file_that_is_not_utf8_is_an_invalid_policy(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.encode() + b"  - name: caf\xe9\n")
    with pytest.raises(InvalidPolicy) as info:
        read_policy_file(path)
    assert info.value.message.startswith(f"{path}:5: ")
    assert "not UTF-8 text (byte 0xe9" in info.value.message


async def test_store_keeps_its_policy_on_every_refusal() -> None:
    store = PolicyStore(load_policy(GOOD))
    before = store.version
    for text in (
        anchor_bomb(9),
        "guards: " + "[" * 5000,
        "guards: &a [*a]\n",
        "guards: 2024-02-30",
    ):
        with pytest.raises(InvalidPolicy):
            await store.apply_async(text)
        assert store.version == before


async def test_watcher_survives_every_bad_file_and_applies_the_next_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-UTF-8 file ended the watcher (UnicodeDecodeError escaped it), so every later
    valid file was ignored."""
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD, encoding="utf-8")
    store = PolicyStore.from_file(path)
    first = store.version
    caplog.set_level(logging.ERROR, logger="guards.policy_store")

    def rejected(count: int) -> bool:
        return sum("keeping" in r.getMessage() for r in caplog.records) >= count

    store.watch(path, interval_s=0.02)
    await asyncio.sleep(0.1)  # the watcher has read the first mtime
    try:
        bad_files: list[bytes] = [
            anchor_bomb(9).encode(),
            b"guards:\n  - name: caf\xe9\n",
            ("guards: " + "[" * 5000).encode(),
            b"guards:\n  - name: x\n    use: 'logging:basicConfig'\n",
        ]
        for n, content in enumerate(bad_files, 1):
            path.write_bytes(content)
            assert await wait_until(lambda n=n: rejected(n), 30), f"file {n} never rejected"
            assert store.version == first
        path.write_text(GOOD_2, encoding="utf-8")
        assert await wait_until(lambda: store.version != first, 30)
        assert store.version == load_policy(GOOD_2).version
    finally:
        await store.stop_watching()
    messages = [r.getMessage() for r in caplog.records]
    assert any("not UTF-8 text" in m for m in messages)
    assert any("once aliases are expanded" in m for m in messages)

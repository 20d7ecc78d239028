from __future__ import annotations

import pytest

from nodes.engines.stop_strings import StopStringFilter


def _run(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    f = StopStringFilter(stops)
    out, hit = "", False
    for piece in pieces:
        text, hit = f.feed(piece)
        out += text
        if hit:
            break
    if not hit:
        out += f.flush()
    return out, hit


def test_no_stops_passes_everything_through() -> None:
    assert _run(["a", "b"], []) == ("ab", False)


@pytest.mark.parametrize("split", range(1, 12))
def test_stop_split_anywhere_is_caught_and_never_emitted(split: int) -> None:
    text = "hello END world"
    out, hit = _run([text[:split], text[split:]], ["END"])
    assert (out, hit) == ("hello ", True)


def test_held_text_is_released_at_the_end() -> None:
    assert _run(["abc", "E"], ["END"]) == ("abcE", False)


def test_earliest_of_several_stops_wins() -> None:
    assert _run(["x STOP y END"], ["END", "STOP"]) == ("x ", True)

"""The trainers' threshold helpers: the limit on flagged benign rows is never exceeded."""

from __future__ import annotations

import pytest

from guards.train_common import cut_for, rounded_up


def flagged(values: list[float], threshold: float) -> int:
    return sum(v >= threshold for v in values)


def test_a_rounded_threshold_never_flags_more_than_allowed() -> None:
    # 0.85114 is the highest allowed-over score: rounding 0.851141 to the nearest 4 decimals
    # gave 0.8511, which flags it too (one row over the limit); rounding up does not.
    values = [0.85114, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02]
    cut = cut_for(values, 0.0)
    assert flagged(values, round(cut, 4)) == 1  # the old rounding
    assert flagged(values, rounded_up(cut, 4)) == 0


@pytest.mark.parametrize("share", [0.0, 0.1, 0.2, 0.5])
def test_cut_for_flags_at_most_the_share(share: float) -> None:
    values = [i / 97 for i in range(97)]
    cut = cut_for(values, share)
    assert flagged(values, rounded_up(cut, 4)) <= int(len(values) * share)


def test_rounded_up_keeps_exact_values_and_caps() -> None:
    assert rounded_up(0.995, 4) == 0.995  # no float drift past a cap
    assert rounded_up(0.95, 3) == 0.95
    assert rounded_up(0.12341, 4) == 0.1235
    assert cut_for([], 0.1) == 0.0

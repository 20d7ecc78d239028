"""Hold-back window: a secret split over chunk boundaries at every position is still redacted."""

from __future__ import annotations

import pytest

from guards.chain import GuardChain
from guards.policy_loader import load_policy
from guards.streaming import StreamGuard
from guards.verdict import Stage

SECRET = "AKIAIOSFODNN7EXAMPLE"
TEXT = f"Here is the key you asked for: {SECRET} and that is all."

POLICY = """
stream: {hold_back_chars: 64}
guards:
  - {name: secrets, use: secrets, stage: output, action: redact}
  - {name: banned, use: banned_words, stage: output, action: block, params: {words: [kaboom]}}
"""


def chain() -> GuardChain:
    loaded = load_policy(POLICY)
    return GuardChain(loaded.guards_for(""), Stage.OUTPUT, loaded.version)


async def stream(chunks: list[str], hold_back: int = 64) -> tuple[str, bool, StreamGuard]:
    guard = StreamGuard(chain(), hold_back)
    out = []
    for chunk in chunks:
        step = await guard.push(chunk)
        out.append(step.text)
        if step.blocked:
            return "".join(out), True, guard
    step = await guard.finish()
    out.append(step.text)
    return "".join(out), step.blocked, guard


async def test_secret_split_at_every_position_is_redacted() -> None:
    start = TEXT.index(SECRET)
    expected = TEXT.replace(SECRET, "[AWS_ACCESS_KEY]")
    for cut in range(start, start + len(SECRET) + 1):
        released, blocked, _ = await stream([TEXT[:cut], TEXT[cut:]])
        assert not blocked
        assert released == expected, cut
        assert SECRET[:8] not in released


@pytest.mark.parametrize("size", [1, 3, 7, 16])
async def test_secret_over_many_small_chunks(size: int) -> None:
    chunks = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
    released, _, guard = await stream(chunks)
    assert released == TEXT.replace(SECRET, "[AWS_ACCESS_KEY]")
    [secrets] = [o for o in guard.outcomes if o.guard == "secrets"]
    assert secrets.verdict.action.value == "redact"
    assert {(f.start, f.end) for f in secrets.verdict.findings} == {
        (TEXT.index(SECRET), TEXT.index(SECRET) + 20)
    }


async def test_text_released_before_stream_ends_when_long() -> None:
    guard = StreamGuard(chain(), 10)
    step = await guard.push("a" * 50)
    assert step.text == "a" * 40  # all but the hold-back window


async def test_block_mid_stream_signals_and_stops() -> None:
    released, blocked, guard = await stream(
        ["all good so far ", "then kab", "oom happens", " more"]
    )
    assert blocked and guard.blocked
    assert "kaboom" not in released
    assert (await guard.push("later")).blocked

"""The chain: order, every action and mode, on_error, timeouts, thread pool, proto conversion."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from guards.chain import GuardChain
from guards.hooks import InputCheck
from guards.proto_convert import verdict_to_proto, verdicts_to_proto
from guards.verdict import Action, Finding, Stage, Verdict
from mesh.v1 import types_pb2
from tests.fixtures.guards import RecordingGuard, built
from tests.helpers import ticking

EMAIL = Finding("EMAIL_ADDRESS", 6, 13)


async def run(*guards: object, text: str = "hello a@b.com") -> tuple[Action, str, list[str]]:
    chain = GuardChain(list(guards), Stage.INPUT, "v1")  # type: ignore[arg-type]
    result = await chain.run(InputCheck(text))
    return result.action, result.text, [o.verdict.action.value for o in result.outcomes]


async def test_chain_order_is_policy_order() -> None:
    record: list[str] = []
    guards = [built(RecordingGuard(n, record)) for n in ("first", "second", "third")]
    await GuardChain(guards, Stage.INPUT, "v1").run(InputCheck("x"))
    assert record == ["first", "second", "third"]


async def test_stage_filter() -> None:
    record: list[str] = []
    guards = [
        built(RecordingGuard("in", record), stage="input"),
        built(RecordingGuard("out", record), stage="output"),
        built(RecordingGuard("both", record), stage="both"),
    ]
    await GuardChain(guards, Stage.OUTPUT, "v1").run(InputCheck("x"))
    assert record == ["out", "both"]


async def test_every_action_enforced() -> None:
    r: list[str] = []
    assert (await run(built(RecordingGuard("a", r))))[0] is Action.ALLOW
    flag = built(RecordingGuard("f", r, Verdict.flag([EMAIL])))
    assert (await run(flag))[:2] == (Action.FLAG, "hello a@b.com")
    redact = built(RecordingGuard("r", r, Verdict.redact("hello a@b.com", [EMAIL])))
    assert (await run(redact))[:2] == (Action.REDACT, "hello [EMAIL_ADDRESS]")
    block = built(RecordingGuard("b", r, Verdict.block([EMAIL])))
    assert (await run(flag, redact, block))[0] is Action.BLOCK


async def test_monitor_mode_records_but_changes_nothing() -> None:
    r: list[str] = []
    block = built(RecordingGuard("b", r, Verdict.block([EMAIL])), mode="monitor")
    redact = built(RecordingGuard("r", r, Verdict.redact("hello a@b.com", [EMAIL])), mode="monitor")
    action, text, verdicts = await run(block, redact)
    assert (action, text, verdicts) == (Action.ALLOW, "hello a@b.com", ["block", "redact"])


async def test_redactions_applied_in_order_earlier_guard_names_overlap() -> None:
    r: list[str] = []
    first = built(RecordingGuard("a", r, Verdict.redact("x", [Finding("FIRST", 6, 10)])))
    second = built(
        RecordingGuard(
            "b", r, Verdict.redact("x", [Finding("SECOND", 8, 13), Finding("OTHER", 0, 5)])
        )
    )
    assert (await run(first, second))[1] == "[OTHER] [FIRST]"


async def test_on_error_open_and_closed() -> None:
    """Open lets the text through, flagged as an error (never a silent allow); closed blocks."""
    r: list[str] = []
    action, text, verdicts = await run(built(RecordingGuard("e", r, fail=True), on_error="open"))
    assert action is Action.FLAG and text == "hello a@b.com" and verdicts == ["flag"]
    assert (await run(built(RecordingGuard("e", r, fail=True), on_error="closed")))[
        0
    ] is Action.BLOCK


async def test_timeout_follows_on_error() -> None:
    r: list[str] = []
    slow = RecordingGuard("slow", r, Verdict.allow(), cpu_heavy=True, sleep_s=0.2)
    assert (await run(built(slow, timeout_ms=20, on_error="closed")))[0] is Action.BLOCK
    inline_slow = RecordingGuard("inline", r, Verdict.allow(), sleep_s=0.05)
    assert (await run(built(inline_slow, timeout_ms=10, on_error="closed")))[0] is Action.ALLOW


async def test_an_unset_timeout_depends_on_how_the_guard_runs() -> None:
    """A guard in a thread gets 2 s unless its spec says otherwise: 200 ms let CPU contention
    turn Bandit's and Presidio's verdicts into on_error passes."""
    from guards.chain import CPU_HEAVY_TIMEOUT_MS, INLINE_TIMEOUT_MS, timeout_ms

    r: list[str] = []
    heavy = RecordingGuard("heavy", r, Verdict.block([EMAIL]), cpu_heavy=True, sleep_s=0.4)
    assert timeout_ms(built(heavy)) == CPU_HEAVY_TIMEOUT_MS == 2000
    assert timeout_ms(built(RecordingGuard("inline", r))) == INLINE_TIMEOUT_MS == 200
    assert timeout_ms(built(heavy, timeout_ms=50)) == 50
    # 0.4 s of work: judged under the default, an error (here closed: a block without the
    # guard's finding) under an explicit 50 ms
    action, _, verdicts = await run(built(heavy, on_error="closed"))
    assert (action, verdicts) == (Action.BLOCK, ["block"])
    chain = GuardChain([built(heavy, timeout_ms=50, on_error="closed")], Stage.INPUT, "v1")
    result = await chain.run(InputCheck("hello a@b.com"))
    assert [f.type for f in result.outcomes[0].verdict.findings] == ["GUARD_ERROR"]
    assert result.outcomes[0].error_type == "timeout"
    [verdict] = verdicts_to_proto(result.outcomes, "v1")
    assert (verdict.error_type, verdict.action) == ("timeout", types_pb2.GUARD_ACTION_BLOCK)


async def test_cpu_heavy_guards_run_in_parallel_off_the_loop() -> None:
    r: list[str] = []
    heavy = [
        built(RecordingGuard(f"h{i}", r, cpu_heavy=True, sleep_s=0.15), timeout_ms=2000)
        for i in range(3)
    ]
    loop = asyncio.get_running_loop()
    async with ticking() as ticks:
        started = loop.time()
        await GuardChain(heavy, Stage.INPUT, "v").run(InputCheck("x"))
        elapsed = loop.time() - started
    assert elapsed < 0.4  # three 0.15 s guards overlapped
    assert ticks.count >= 5  # the event loop kept running meanwhile
    assert threading.current_thread() is threading.main_thread()


def test_verdict_to_proto_stamps_policy_version() -> None:
    from guards.verdict import GuardOutcome, Mode

    proto = verdict_to_proto(
        GuardOutcome("pii", Stage.INPUT, Mode.MONITOR, Verdict.flag([EMAIL])), "abc123"
    )
    assert proto.policy_version == "abc123"
    assert (
        proto.action == types_pb2.GUARD_ACTION_FLAG and proto.mode == types_pb2.GUARD_MODE_MONITOR
    )
    assert proto.stage == types_pb2.GUARD_STAGE_INPUT
    assert (proto.findings[0].type, proto.findings[0].start, proto.findings[0].end) == (
        "EMAIL_ADDRESS",
        6,
        13,
    )


def test_a_view_blanks_other_roles_and_keeps_every_offset() -> None:
    from guards.hooks import InputCheck, Turn

    text = "SYS secret\n\nuser words"
    check = InputCheck(text, turns=(Turn("system", 0, 10), Turn("user", 12, 22)))
    user_only = check.view(frozenset(["user"]))
    assert user_only.text == " " * 10 + "\n\nuser words" and len(user_only.text) == len(text)
    assert check.view(frozenset(["system", "user"])) is check  # nothing hidden: no copy
    assert (
        check.view(frozenset(["user"])) is user_only
    )  # one view per role set, reused by every guard
    assert InputCheck("untyped").view(frozenset(["user"])).text == "untyped"


async def test_an_all_fast_chain_runs_in_place_with_the_general_paths_outcomes() -> None:
    """A chain of fast guards runs them in one loop (`_inline_runs`), not a coroutine each: the
    same outcomes as `_outcome` per guard for every kind of check, verdict, mode and failure;
    an allow with nothing found is one shared outcome per guard."""
    from guards.chain import OFF_LOOP_CHARS, _outcome
    from guards.hooks import OutputChunkCheck, OutputFinalCheck

    r: list[str] = []
    both = {"stage": "both"}
    guards = [
        built(RecordingGuard("allow", r), **both),
        built(RecordingGuard("flag", r, Verdict.flag([EMAIL])), **both),
        built(RecordingGuard("redact", r, Verdict.redact("hello a@b.com", [EMAIL])), **both),
        built(RecordingGuard("monitored", r, Verdict.block([EMAIL])), mode="monitor", **both),
        built(RecordingGuard("open", r, fail=True), on_error="open", **both),
        built(RecordingGuard("closed", r, fail=True), on_error="closed", **both),
    ]
    text = "hello a@b.com"
    checks = [
        (Stage.INPUT, InputCheck(text)),
        (Stage.OUTPUT, OutputChunkCheck(text, offset=0)),
        (Stage.OUTPUT, OutputFinalCheck(text)),
    ]
    for stage, check in checks:
        chain = GuardChain(guards, stage, "v1")
        runs = chain._inline_runs(check)
        expected = [await _outcome(g, stage, check) for g in chain.guards]
        assert len(runs) == 6 and [run.outcome for run in runs] == expected
        assert all(run.duration_ns >= 0 and run.end_ns > 0 for run in runs)
        assert chain._inline_runs(check)[0].outcome is runs[0].outcome  # the shared allow
        result = await chain.run(check)
        assert result.action is Action.BLOCK
        assert [o.error_type for o in result.outcomes][-2:] == ["RuntimeError", "RuntimeError"]
    # a long text leaves the loop (a worker thread) and gets the same outcomes
    long = InputCheck("x" * (OFF_LOOP_CHARS + 1))
    chain = GuardChain(guards, Stage.INPUT, "v1")
    assert not chain._in_place(long)
    assert (await chain.run(long)).outcomes == tuple(r.outcome for r in chain._inline_runs(long))


async def test_a_chain_with_a_guard_in_a_thread_does_not_run_in_place() -> None:
    r: list[str] = []
    mixed = [built(RecordingGuard("fast", r)), built(RecordingGuard("heavy", r, cpu_heavy=True))]
    chain = GuardChain(mixed, Stage.INPUT, "v1")
    assert not chain._in_place(InputCheck("x"))
    assert (await chain.run(InputCheck("x"))).action is Action.ALLOW
    assert sorted(r) == ["fast", "heavy"]


async def test_an_inline_guard_past_its_timeout_is_logged_not_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r: list[str] = []
    slow = built(RecordingGuard("slow", r, sleep_s=0.03), timeout_ms=5, on_error="closed")
    with caplog.at_level(logging.WARNING, logger="guards.chain"):
        result = await GuardChain([slow], Stage.INPUT, "v1").run(InputCheck("x"))
    assert result.action is Action.ALLOW
    assert "inline guard slow overran its 5 ms timeout" in caplog.text

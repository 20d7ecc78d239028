"""A CPU-heavy guard whose checks outlive their deadline: bounded, isolated, and released."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from guards.chain import GuardChain
from guards.check_threads import CHECK_THREADS, OVERRUN_LIMIT, CheckThreads
from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.verdict import Action, Stage, Verdict
from tests.fixtures.guards import RecordingGuard, built


@dataclass
class GatedGuardForTests:
    """Test-only CPU-heavy guard: each check waits for `gate`, as a hostile text would hold a
    slow detector, and records the thread it ran in."""

    name: str
    gate: threading.Event = field(default_factory=threading.Event)
    threads: list[str] = field(default_factory=list)
    cpu_heavy: bool = True

    def check_input(self, check: InputCheck) -> Verdict:
        self.threads.append(threading.current_thread().name)
        self.gate.wait(10)
        return Verdict.allow()

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict:
        return Verdict.allow()

    def check_output_final(self, check: OutputFinalCheck) -> Verdict:
        return Verdict.allow()


async def wait_until(predicate: object, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def outcome_of(chain: GuardChain) -> tuple[Action, list[str]]:
    result = await chain.run(InputCheck("some text"))
    return result.action, [o.error_type for o in result.outcomes]


async def test_a_guard_leaves_at_most_its_overrun_limit_behind_then_recovers() -> None:
    slow = GatedGuardForTests("gated_recovers")
    chain = GuardChain([built(slow, timeout_ms=30, on_error="closed")], Stage.INPUT, "v1")  # type: ignore[arg-type]
    try:
        for _ in range(OVERRUN_LIMIT):
            assert await outcome_of(chain) == (Action.BLOCK, ["timeout"])
        assert CHECK_THREADS.overrunning(slow.name) == OVERRUN_LIMIT
        # Past the limit the guard fails at once, without taking another worker.
        assert await outcome_of(chain) == (Action.BLOCK, ["overloaded"])
        assert len(slow.threads) == OVERRUN_LIMIT
    finally:
        slow.gate.set()
    await wait_until(lambda: CHECK_THREADS.overrunning(slow.name) == 0)
    assert await outcome_of(chain) == (Action.ALLOW, [""])


async def test_a_stuck_guard_holds_only_guard_workers_and_the_others_still_run() -> None:
    slow = GatedGuardForTests("gated_beside_others")
    record: list[str] = []
    other = RecordingGuard("heavy_neighbour", record, cpu_heavy=True)
    chain = GuardChain(
        [built(slow, timeout_ms=30, on_error="open"), built(other, timeout_ms=2000)],  # type: ignore[list-item]
        Stage.INPUT,
        "v1",
    )
    try:
        for _ in range(OVERRUN_LIMIT + 3):
            action, errors = await outcome_of(chain)
            assert action is Action.FLAG  # on_error open: passed, flagged
            assert errors[1] == ""  # the neighbour checked the text every time
        assert record == ["heavy_neighbour"] * (OVERRUN_LIMIT + 3)
        assert all(name.startswith("guard-check") for name in slow.threads)
        # asyncio's default executor (semantic cache lookups, policy reloads) is untouched.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 5) == "free"
    finally:
        slow.gate.set()
    await wait_until(lambda: CHECK_THREADS.overrunning(slow.name) == 0)


async def test_a_check_whose_deadline_passes_before_a_worker_takes_it_never_runs() -> None:
    threads = CheckThreads(workers=1, overrun_limit=5)
    gate = threading.Event()
    ran: list[str] = []
    holder = asyncio.create_task(threads.run_until("holder", lambda: gate.wait(10), 30))
    await asyncio.sleep(0.05)  # the only worker is busy now
    with pytest.raises(TimeoutError):
        await threads.run_until("queued", lambda: ran.append("queued"), 0.05)
    assert threads.overrunning("queued") == 0  # withdrawn, not counted as left running
    gate.set()
    assert await holder is True
    await asyncio.sleep(0.05)
    assert ran == []


async def test_a_stuck_guard_stays_counted_across_a_policy_reload() -> None:
    """Guards of every policy version share the pool: a reload does not reset the count."""
    slow = GatedGuardForTests("gated_across_reload")
    first = GuardChain([built(slow, timeout_ms=30, on_error="closed")], Stage.INPUT, "v1")  # type: ignore[arg-type]
    second = GuardChain([built(slow, timeout_ms=30, on_error="closed")], Stage.INPUT, "v2")  # type: ignore[arg-type]
    try:
        for _ in range(OVERRUN_LIMIT):
            await outcome_of(first)
        assert await outcome_of(second) == (Action.BLOCK, ["overloaded"])
    finally:
        slow.gate.set()
    await wait_until(lambda: CHECK_THREADS.overrunning(slow.name) == 0)

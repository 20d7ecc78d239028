"""guardrails-ai validators run in sandbox worker processes (guards/validator_sandbox.py), with
real processes throughout.

Before the sandbox, RegexMatch with `(a+)+$` on "a" * 28 + "!" held the GIL in the chain's
thread and froze the router's event loop for 15.5 s past a 200 ms timeout; here a worker is
killed at the guard's timeout while the loop keeps running, a dying worker is that call's
error, concurrent calls keep their own answers, and a closed or replaced policy leaves no
worker process behind.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from guards.chain import GuardChain
from guards.errors import InvalidPolicy
from guards.hooks import InputCheck
from guards.policy_loader import LoadRules, load_policy
from guards.policy_store import PolicyStore
from guards.validator_sandbox import WORKERS, worker_pids
from guards.verdict import Action, ChainResult, Stage
from tests.helpers import ticking, wait_until

pytest.importorskip("guardrails", reason="the `guardrails` extra is not installed")

FIXTURES = "tests.fixtures.sandbox_validators"
RULES = LoadRules(validator_modules=("guardrails_ai.*", FIXTURES))
# 27 a's: about 8 s of backtracking on one core, far past the guard's 300 ms timeout.
CATASTROPHIC = "a" * 27 + "!"
REDOS = """
guards:
  - name: evil
    use: guardrails_ai.regex_match:RegexMatch
    params: {regex: "(a+)+$", match_type: search}
    action: block
    timeout_ms: 300
"""


def policy(use: str, on_error: str = "open", **params: object) -> str:
    args = ", ".join(f"{k}: {v}" for k, v in params.items())
    return (
        f"guards:\n  - name: g\n    use: {use}\n    params: {{{args}}}\n"
        f"    action: redact\n    on_error: {on_error}\n    timeout_ms: 20000\n"
    )


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (exited but not reaped)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def open_stores() -> Iterator[list[PolicyStore]]:
    """Stores a test opens; closed after it, whatever happens."""
    stores: list[PolicyStore] = []
    yield stores
    for store in stores:
        store.close()


async def ready_store(text: str, stores: list[PolicyStore]) -> tuple[PolicyStore, GuardChain]:
    store = PolicyStore(load_policy(text, "sandbox.yaml", RULES), rules=RULES)
    stores.append(store)
    assert await wait_until(lambda: len(worker_pids()) == WORKERS, 60)
    return store, store.chain(Stage.INPUT)


def only_error(result: ChainResult) -> tuple[str, str]:
    [outcome] = result.outcomes
    return outcome.error_type, outcome.error


async def test_a_catastrophic_regex_times_out_and_the_event_loop_keeps_running(
    open_stores: list[PolicyStore],
) -> None:
    _, chain = await ready_store(REDOS, open_stores)
    async with ticking(0.02) as ticks:
        started = time.monotonic()
        result = await chain.run(InputCheck(CATASTROPHIC))
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert ticks.count >= 5, f"the event loop ticked {ticks.count} times in {elapsed:.1f} s"
    assert only_error(result) == ("timeout", "timed out after 300 ms")
    assert result.action is Action.FLAG  # on_error: open, flagged GUARD_ERROR


async def test_after_timeouts_fresh_workers_answer_correctly(
    open_stores: list[PolicyStore],
) -> None:
    """Two catastrophic calls at once occupy (and kill) both workers, so the calls after them
    can only have been answered by new ones; the killed ones are reaped, not zombies."""
    _, chain = await ready_store(REDOS, open_stores)
    killed = set(worker_pids())
    results = await asyncio.gather(*(chain.run(InputCheck(CATASTROPHIC)) for _ in killed))
    assert [only_error(r)[0] for r in results] == ["timeout"] * len(killed)
    assert await wait_until(
        lambda: len(worker_pids()) == WORKERS and not killed & set(worker_pids()), 60
    )
    assert not [pid for pid in killed if alive(pid)]
    ok = await chain.run(InputCheck("aaaa"))
    assert ok.action is Action.ALLOW and only_error(ok) == ("", "")
    bad = await chain.run(InputCheck("no match!"))
    assert bad.blocked and only_error(bad) == ("", "")
    assert [f.type for f in bad.outcomes[0].verdict.findings] == ["REGEXMATCH"]


@pytest.mark.parametrize(
    ("text", "how"), [("exit", "exit code 7"), ("segfault", "killed by SIGSEGV")]
)
async def test_a_worker_that_dies_mid_call_is_that_guards_error(
    open_stores: list[PolicyStore], text: str, how: str
) -> None:
    _, chain = await ready_store(policy(f"{FIXTURES}:CrashingValidatorForTests"), open_stores)
    started = time.monotonic()
    result = await chain.run(InputCheck(text))
    assert time.monotonic() - started < 10  # the guard's timeout is 20 s: no waiting for it
    error_type, error = only_error(result)
    assert error_type == "worker_died" and how in error
    assert result.action is Action.FLAG
    after = await chain.run(InputCheck("fine"))  # a new worker, or the other one
    assert after.action is Action.ALLOW and only_error(after) == ("", "")


async def test_a_worker_killed_from_outside_fails_the_call_closed(
    open_stores: list[PolicyStore],
) -> None:
    use = f"{FIXTURES}:CrashingValidatorForTests"
    _, chain = await ready_store(policy(use, on_error="closed"), open_stores)
    call = asyncio.create_task(chain.run(InputCheck("sleep")))
    await asyncio.sleep(0.5)  # the worker is in its minute of sleep
    for pid in worker_pids():
        os.kill(pid, signal.SIGKILL)
    result = await asyncio.wait_for(call, 10)
    error_type, error = only_error(result)
    assert error_type == "worker_died" and "SIGKILL" in error
    assert result.blocked  # on_error: closed


async def test_a_worker_killed_while_idle_does_not_refuse_the_next_policy(
    open_stores: list[PolicyStore],
) -> None:
    """A build is safe to repeat: one that lands on a worker killed from outside a moment
    before (not yet reaped) runs again on a fresh one. In CI a policy was refused so."""
    marker = f"{FIXTURES}:MarkerValidatorForTests"
    await ready_store(policy(marker), open_stores)
    for pid in worker_pids():
        os.kill(pid, signal.SIGKILL)
    _, chain = await ready_store(
        policy(f"{FIXTURES}:MarkerValidatorForTests", delay_s=0.0), open_stores
    )
    result = await chain.run(InputCheck("a secret-1"))
    assert only_error(result) == ("", "")
    assert result.text == "a [MARKERVALIDATORFORTESTS]"


async def test_concurrent_calls_each_get_their_own_verdict(
    open_stores: list[PolicyStore],
) -> None:
    use = f"{FIXTURES}:MarkerValidatorForTests"
    store, chain = await ready_store(policy(use, delay_s=0.01), open_stores)
    texts = [f"{'x' * i} secret-{i} and more" if i % 3 else f"clean {i}" for i in range(20)]
    results = await asyncio.gather(*(chain.run(InputCheck(t)) for t in texts))
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        assert only_error(result) == ("", "")
        expected = text.replace(f"secret-{i}", "[MARKERVALIDATORFORTESTS]")
        assert result.text == expected
        assert result.action is (Action.REDACT if i % 3 else Action.ALLOW)
    # The synchronous hook, for callers outside the chain, reaches the same workers.
    guard = store.active.guards_for("")[0].guard
    verdict = await asyncio.to_thread(guard.check_input, InputCheck("a secret-7"))
    assert verdict.text == "a [MARKERVALIDATORFORTESTS]"
    assert FIXTURES not in sys.modules  # the validator's code ran only in the workers


async def test_a_caller_that_goes_away_does_not_kill_the_worker(
    open_stores: list[PolicyStore],
) -> None:
    """A client cancelling its request is not a runaway validator: the call already running
    finishes in its worker, which stays."""
    use = f"{FIXTURES}:MarkerValidatorForTests"
    _, chain = await ready_store(policy(use, delay_s=0.5), open_stores)
    before = set(worker_pids())
    call = asyncio.create_task(chain.run(InputCheck("a secret-1")))
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(1)
    assert set(worker_pids()) == before
    result = await chain.run(InputCheck("a secret-2"))
    assert result.text == "a [MARKERVALIDATORFORTESTS]"


def test_bad_params_are_refused_at_load_from_the_worker() -> None:
    text = REDOS.replace("match_type: search", "match_type: sideways")
    with pytest.raises(InvalidPolicy) as info:
        load_policy(text, "sandbox.yaml", RULES)
    assert info.value.message.startswith("sandbox.yaml:5: invalid policy at guards[0].params: ")
    assert "match_type must be in" in info.value.message


async def no_worker_left(pids: list[int]) -> bool:
    def gone() -> bool:
        children = {p.pid for p in psutil.Process().children(recursive=True)}
        return not worker_pids() and not [p for p in pids if alive(p) or p in children]

    return await wait_until(gone, 15)


async def test_closing_or_replacing_the_policy_leaves_no_worker_process() -> None:
    gc.collect()  # policies other tests left behind release their validators
    assert await no_worker_left([])
    store = PolicyStore(load_policy(REDOS, "sandbox.yaml", RULES), rules=RULES)
    try:
        assert (await store.chain(Stage.INPUT).run(InputCheck("aaa"))).action is Action.ALLOW
        assert await wait_until(lambda: len(worker_pids()) == WORKERS, 60)
        first = worker_pids()
        # Another policy with validators: the same workers serve it, none is added.
        store.apply(policy(f"{FIXTURES}:MarkerValidatorForTests"))
        result = await store.chain(Stage.INPUT).run(InputCheck("a secret-1"))
        assert result.text == "a [MARKERVALIDATORFORTESTS]"
        assert worker_pids() == first
        # A policy without validators: the workers exit and are reaped.
        store.apply("guards:\n  - name: pii\n    use: pii\n    action: redact\n")
        assert await no_worker_left(first)
    finally:
        store.close()

    store = PolicyStore(load_policy(REDOS, "sandbox.yaml", RULES), rules=RULES)
    assert await wait_until(lambda: len(worker_pids()) == WORKERS, 60)
    second = worker_pids()
    store.close()
    assert await no_worker_left(second)

"""guardrails-ai validators run in worker processes, never in the router's own.

Measured before this module: a policy's `RegexMatch` with `regex: "(a+)+$"` (match_type
search) on a request of "a" * 28 + "!" froze the router's whole event loop for 15.5 s, then
`on_error: open` let the request through; with 40 a's it would have held it for hours.
Python's `re` keeps the GIL for a whole match, so the thread the chain ran the validator in
could not be cut at its 200 ms timeout and the loop (health checks, every other request) got
no turn. A validator is third-party code chosen by a policy: in a process of its own, a
worker that spends longer than the guard's timeout on one call is ended with SIGKILL, a crash
(segfault, `os._exit`, the kernel's OOM killer) is that call's GuardFailure and never a hang,
and what it allocates is not the router's memory. Time spent queued for a free worker does not
count towards the kill (the chain's own deadline ends the caller's wait), so a healthy worker
is never killed because calls queued before it; a caller that goes away (a client cancels)
takes its call out of the queue, but lets one already running finish or reach its timeout.

Shape. WORKERS processes, each a fresh interpreter started by `subprocess` with
`multiprocessing.connection` framing over a socket pair: never a fork of the router (it is
multi-threaded; a forked copy inherits locks other threads held), and not `multiprocessing`'s
spawn or forkserver either, which import the parent's `__main__` file again in the child (a
script without an `if __name__ == "__main__"` guard, such as the ReDoS repro, re-ran itself
in the worker). Each worker switches guardrails offline (`offline_guardrails`) before it
builds anything, then builds every registered validator from its (use, params) after the
router has checked the allow-list, and answers one call at a time with a Verdict
(guardrails_adapter translates in the worker). Each worker has one dispatcher thread in the
router that owns its connection: one call in flight per connection, and a connection is thrown
away with its worker on any error, so a reply always belongs to the call just sent (no request
ids needed). Calls from every request wait in one queue that the dispatchers share.

Two workers: one catastrophic call then holds one of them (until its guard's timeout) while
the other keeps serving, and a killed worker is replaced in the background (about 2 s here:
a new interpreter importing guardrails) while the other answers. More would not add
throughput for CPU-bound validators on the 2 cores this was measured on, and each worker costs
about 135 MB (guardrails imported). Any fixed number can be saturated by as many concurrent
catastrophic requests; they then wait in the queue and fail at their own timeouts
(`on_error`), without freezing anything else.

Lifetime. A validator is registered while its guard lives: the store closes a replaced policy's
guards, a policy nobody holds (a dry run, an EvaluateGuards candidate) is released when it is
garbage, and when nothing is registered the workers are shut down. A closed guard used again
(a request still streaming under the policy it was replaced by) registers again. At
interpreter exit the workers are closed (EOF, then SIGKILL after a grace) and reaped; if the
router itself dies, Linux ends its workers too (PR_SET_PDEATHSIG), even in the middle of a
match.

Cost per call, measured here (one RegexMatch guard through GuardChain.run on a short text,
p50 of 400 calls, four runs alternating before/after on the same 2-core machine, shared with
other jobs): in a thread 0.22-0.24 ms before, in the sandbox 0.31-0.33 ms (one run 0.43),
so about 0.1 ms more: two pipe messages and a thread hop, instead of one thread hop.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

from guards.errors import GuardFailure, UnknownGuard
from guards.validator_process import START_TIMEOUT_S, STOP_GRACE_S, Worker, WorkerGone
from guards.verdict import Action, Finding, Verdict

log = logging.getLogger(__name__)

WORKERS = 2
# A validator's constructor may load a model; this bounds one that never returns.
BUILD_TIMEOUT_S = 60.0
# How often idle dispatchers look at what garbage-collected guards released (a finalizer may
# take no lock, so it leaves the key in a queue instead of waking anyone).
RELEASE_POLL_S = 0.5


@dataclass(frozen=True)
class ValidatorSpec:
    """What a worker needs to build one validator and translate its results."""

    use: str
    params: dict[str, Any]
    action: Action
    finding_type: str
    patterns: tuple[str, ...]  # the allow-list, checked again in the worker


def _verdict(reply: tuple[Any, ...]) -> Verdict:
    """In the router: the Verdict a worker's plain reply describes
    (guards.validator_worker.plain_verdict)."""
    _, action, findings, text = reply
    return Verdict(Action(action), tuple(Finding(*f) for f in findings), text)


class _Call:
    """One validate (text) or build (text None) request, settled through `future`.

    `timeout_s` is how long the worker may spend on it once it starts: past that the worker is
    killed. Time spent waiting for a free worker does not count (the caller's own deadline
    covers it), so a healthy worker is never killed because calls queued before it."""

    def __init__(self, key: int, spec: ValidatorSpec, text: str | None, timeout_s: float) -> None:
        self.key = key
        self.spec = spec
        self.text = text
        self.timeout_s = timeout_s
        self.future: concurrent.futures.Future[Verdict | None] = concurrent.futures.Future()

    def settle(self, result: Verdict | BaseException | None) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            if isinstance(result, BaseException):
                self.future.set_exception(result)
            else:
                self.future.set_result(result)


def _build_error(reply: tuple[Any, ...]) -> Exception:
    """The worker's refusal to build a validator, as the exception policy_loader maps to
    INVALID_POLICY: UnknownGuard for the `use`, the builtin exception class otherwise (a
    validator's own exception classes are never unpickled here: that would import its code)."""
    _, kind, type_name, message = reply
    if kind == "use":
        return UnknownGuard(message)
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        with contextlib.suppress(Exception):  # UnicodeError and kin take more arguments
            return cls(message)
    return RuntimeError(f"{type_name}: {message}")


class _Pool:
    """WORKERS workers, their dispatcher threads, the shared call queue and the registry."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: deque[_Call] = deque()
        self._specs: dict[int, ValidatorSpec] = {}
        self._build_failed: dict[int, str] = {}  # why a background build failed; not retried
        self.closed = False
        self.workers = [Worker(f"mesh-validator-{n}") for n in range(WORKERS)]
        self._threads = [
            threading.Thread(target=self._dispatch, args=(w,), name=w.name, daemon=True)
            for w in self.workers
        ]
        for thread in self._threads:
            thread.start()

    # --- called by guards and the module's functions -----------------------------------------
    def register(self, key: int, spec: ValidatorSpec) -> None:
        with self._cond:
            self._specs[key] = spec
            self._cond.notify_all()  # every worker builds it now, not inside a call

    def idle(self) -> bool:
        """Under self._cond: nothing registered, nothing queued."""
        if not self.closed:  # a closed pool leaves released keys to the one after it
            self._drain_released()
        return not self._specs and not self._calls

    def release(self, key: int) -> bool:
        """Forget a validator; whether nothing is registered any more."""
        with self._cond:
            self._forget(key)
            return self.idle()

    def _forget(self, key: int) -> None:
        self._specs.pop(key, None)
        self._build_failed.pop(key, None)

    def submit(self, key: int, spec: ValidatorSpec, text: str | None, timeout_s: float) -> _Call:
        call = _Call(key, spec, text, timeout_s)
        with self._cond:
            if not self.closed:
                self._calls.append(call)
                self._cond.notify()
                return call
        call.settle(GuardFailure("the validator sandbox is closed", "sandbox_closed"))
        return call

    def close(self) -> None:
        """Stop taking calls; each dispatcher ends its worker once its current call is done.
        Returns at once (see `join`)."""
        with self._cond:
            self.closed = True
            pending = list(self._calls)
            self._calls.clear()
            self._cond.notify_all()
        for call in pending:
            call.settle(GuardFailure("the validator sandbox is closed", "sandbox_closed"))

    def join(self) -> None:
        """After `close`: wait for the workers to exit, killing any still in a call (or a
        build) after a grace."""
        pairs = [
            (t, w)
            for t, w in zip(self._threads, self.workers, strict=True)
            if t is not threading.current_thread()
        ]
        for thread, _ in pairs:
            thread.join(STOP_GRACE_S)
        for thread, worker in pairs:
            if thread.is_alive():
                worker.kill()
        for thread, _ in pairs:
            thread.join(STOP_GRACE_S * 2)

    def _drain_released(self) -> None:
        """Under self._cond: forget what finalizers released."""
        while True:
            try:
                key = _released.get_nowait()
            except queue.Empty:
                return
            self._forget(key)

    def _close_if_idle(self) -> None:
        global _pool
        with _pool_lock, self._cond:  # the module lock first, as everywhere
            if self.closed or not self.idle():
                return
            if _pool is self:
                _pool = None
        self.close()

    # --- dispatcher threads ------------------------------------------------------------------
    def _dispatch(self, worker: Worker) -> None:
        try:
            while not self.closed:
                failure: WorkerGone | None = None
                if not worker.usable():  # first, or after a kill: replaced before any call
                    try:
                        worker.start()
                    except WorkerGone as gone:
                        log.error("validator worker %s %s", worker.name, gone)
                        failure = gone
                job = self._next_job(worker, builds=failure is None)
                if job is None:
                    return
                if isinstance(job, _Call):
                    self._run(worker, job, failure)
                else:
                    self._build_in_background(worker, *job)
        finally:
            worker.stop()

    def _next_job(
        self, worker: Worker, *, builds: bool
    ) -> _Call | tuple[int, ValidatorSpec] | None:
        """Blocks until there is something for this worker: a registered validator it has not
        built (first, so no call pays for it), a call, or the end (None)."""
        while True:
            with self._cond:
                if self.closed:
                    return None
                if not self.idle():
                    if builds:
                        for key, spec in self._specs.items():
                            if key not in worker.built and key not in self._build_failed:
                                return key, spec
                    if self._calls:
                        return self._calls.popleft()
                    self._cond.wait(RELEASE_POLL_S)
                    continue
            self._close_if_idle()  # takes the module lock: never under self._cond

    def _stale(self, worker: Worker, keep: int) -> list[int]:
        """Validators the worker holds that nobody uses any more (sent along to be dropped)."""
        with self._cond:
            stale = [k for k in worker.built if k not in self._specs and k != keep]
        for key in stale:
            del worker.built[key]
        return stale

    def _build(
        self, worker: Worker, key: int, spec: ValidatorSpec, timeout_s: float | None
    ) -> None:
        message = ("build", key, spec.use, spec.params, spec.action, spec.finding_type)
        try:
            reply = worker.ask((*message, spec.patterns, self._stale(worker, key)), timeout_s)
        except WorkerGone as gone:
            # A worker that died at once, without overrunning, may have been killed from
            # outside just before (the OOM killer, an operator, a test): a build is safe to
            # repeat, so once more on a fresh worker before the validator counts as failed
            # (refused at load, or `build_failed` for the policy's life). Seen in CI: a policy
            # refused because the worker picked for its build had been SIGKILLed a moment
            # earlier and not yet reaped.
            if gone.overran:
                raise
            log.warning(
                "validator worker %s gone before a build (%s); starting a new one",
                worker.name,
                gone,
            )
            worker.start()
            reply = worker.ask((*message, spec.patterns, []), timeout_s)
        worker.built[key] = None if reply[0] == "built" else reply

    def _build_in_background(self, worker: Worker, key: int, spec: ValidatorSpec) -> None:
        try:
            self._build(worker, key, spec, BUILD_TIMEOUT_S)
        except Exception as exc:  # WorkerGone, or params that cannot be pickled
            why = f"{worker.name} {exc}" if isinstance(exc, WorkerGone) else repr(exc)
            log.error("validator %s could not be built: %s", spec.use, why)
            with self._cond:
                self._build_failed[key] = why

    def _run(self, worker: Worker, call: _Call, failure: WorkerGone | None) -> None:
        # A caller that gave up while the call queued cancelled it: skipped, never sent.
        if not call.future.set_running_or_notify_cancel():
            return
        result: Verdict | BaseException | None
        try:
            result = self._result(worker, call, failure)
        except WorkerGone as gone:
            if gone.overran:
                ms = round(call.timeout_s * 1000)
                result = GuardFailure(f"timed out after {ms} ms", "timeout")
                if call.text is None:
                    result = TimeoutError(f"building {call.spec.use} took more than {ms} ms")
            else:
                what = "did not start" if gone is failure else "died"
                result = GuardFailure(f"the validator process {what} ({gone})", "worker_died")
                if call.text is None:
                    result = RuntimeError(f"the validator process {what} ({gone})")
        except Exception as exc:  # never the end of this dispatcher
            result = GuardFailure(f"{type(exc).__name__}: {exc}", type(exc).__qualname__)
        call.settle(result)

    def _result(
        self, worker: Worker, call: _Call, failure: WorkerGone | None
    ) -> Verdict | BaseException | None:
        if failure is not None:
            raise failure
        if call.key not in worker.built:
            with self._cond:
                failed = self._build_failed.get(call.key)
            if failed is not None:  # it hung or crashed its worker once; not again
                worker.built[call.key] = ("refused", "params", "RuntimeError", failed)
            else:
                self._build(worker, call.key, call.spec, call.timeout_s)
        refused = worker.built[call.key]
        if refused is not None:
            error = _build_error(refused)
            if call.text is None:
                return error
            return GuardFailure(f"the validator could not be built: {error}", "build_failed")
        if call.text is None:
            return None
        message = ("check", call.key, call.text, self._stale(worker, call.key))
        reply = worker.ask(message, call.timeout_s)
        if reply[0] == "verdict":
            return _verdict(reply)
        _, type_name, message = reply
        return GuardFailure(f"{type_name}: {message}", type_name)


# --- the one pool of this process --------------------------------------------------------------
_pool_lock = threading.Lock()  # guards _pool; taken before a pool's own condition, never after
_pool: _Pool | None = None
_keys = itertools.count(1)
_released: queue.SimpleQueue[int] = queue.SimpleQueue()  # keys of guards garbage-collected


def _register(key: int, spec: ValidatorSpec) -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None or _pool.closed:
            _pool = _Pool()
        _pool.register(key, spec)
        return _pool


def _release(pool: _Pool, key: int) -> None:
    """Forget a validator; the last one closes the pool (its workers exit in the background)."""
    global _pool
    with _pool_lock:
        if not pool.release(key) or pool.closed:
            return
        if _pool is pool:
            _pool = None
    pool.close()


def worker_pids() -> list[int]:
    """The pids of this process's validator workers that are ready for calls (none when no
    validator is registered)."""
    pool = _pool
    if pool is None:
        return []
    return [pid for w in pool.workers if (pid := w.pid) is not None]


@atexit.register
def shutdown() -> None:
    """Close every worker and wait until each has exited and been reaped (at interpreter exit;
    a guard used afterwards starts new ones)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()
        pool.join()


class SandboxedValidator:
    """One guardrails-ai validator built in the sandbox's workers; what a GuardrailsGuard runs.

    `open` builds it once before returning, so a bad `use` or bad params fail the policy load.
    `check` awaits a Verdict; a worker that runs a call past `timeout_s` is killed. GuardFailure
    when that happens, when the worker dies, the validator raises, or the sandbox is closed."""

    def __init__(self, spec: ValidatorSpec) -> None:
        self.spec = spec
        self.key = next(_keys)
        self._lock = threading.Lock()
        self._pool: _Pool | None = None
        weakref.finalize(self, _released.put, self.key)

    @classmethod
    def open(cls, spec: ValidatorSpec) -> SandboxedValidator:
        """Build the validator in a worker now. Raises UnknownGuard (the `use`), the builtin
        class of what its constructor raised (the params), or TimeoutError."""
        validator = cls(spec)
        call = validator._pool_for_call().submit(validator.key, spec, None, BUILD_TIMEOUT_S)
        try:
            # The worker's own limit ends the build; this one only bounds a worker never started.
            call.future.result(START_TIMEOUT_S + BUILD_TIMEOUT_S + STOP_GRACE_S)
        except concurrent.futures.TimeoutError:
            call.future.cancel()
            validator.close()
            raise TimeoutError(f"no validator worker built {spec.use}") from None
        except BaseException:
            validator.close()
            raise
        return validator

    def _pool_for_call(self) -> _Pool:
        with self._lock:
            if self._pool is None or self._pool.closed:
                self._pool = _register(self.key, self.spec)
            return self._pool

    async def check(self, text: str, timeout_s: float) -> Verdict:
        """The Verdict on `text`. Cancelling this (a caller's deadline, a client gone) cancels
        a call still queued; one already running ends by itself or at `timeout_s`."""
        call = self._pool_for_call().submit(self.key, self.spec, text, timeout_s)
        verdict = await asyncio.wrap_future(call.future)
        assert verdict is not None
        return verdict

    def check_blocking(self, text: str, timeout_s: float) -> Verdict:
        """`check` for a caller without an event loop; GuardFailure("timed out ...") when no
        verdict comes in `timeout_s` (queueing included)."""
        call = self._pool_for_call().submit(self.key, self.spec, text, timeout_s)
        try:
            verdict = call.future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            call.future.cancel()
            raise GuardFailure(f"timed out after {timeout_s * 1000:.0f} ms", "timeout") from None
        assert verdict is not None
        return verdict

    def close(self) -> None:
        """Release the validator now (workers drop it; with nothing registered they exit)."""
        with self._lock:  # a call meanwhile registers again after this, not before
            pool, self._pool = self._pool, None
            if pool is not None:
                _release(pool, self.key)

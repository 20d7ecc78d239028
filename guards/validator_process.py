"""One sandbox worker process of guards/validator_sandbox.py: start it, ask it, kill it, stop it.

A fresh interpreter started by `subprocess` (never a fork of the multi-threaded router, nor
multiprocessing's spawn, which re-imports the parent's `__main__`), spoken to with
`multiprocessing.connection` framing over a socket pair, one message in flight at a time. Its
replies are unpickled with no class allowed: the process runs third-party code. The pool that
shares calls between workers, and why there are two, is in validator_sandbox.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

# A new worker imports guardrails (about 2 s here) before it answers; a loaded host is slower.
START_TIMEOUT_S = 60.0
# How long a closing worker gets to exit by itself (EOF on its connection) before SIGKILL.
STOP_GRACE_S = 2.0


class WorkerGone(Exception):
    """The worker stopped answering: it overran its time (and was killed), crashed, or never
    started."""

    def __init__(self, why: str, *, overran: bool = False) -> None:
        super().__init__(why)
        self.overran = overran


class PlainUnpickler(pickle.Unpickler):
    """Reads a worker's replies: tuples, strings, numbers, None, and nothing that names a class
    or function. Unpickling what a process running third-party code sends could otherwise run
    any code in the router."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a worker's reply may not name {module}.{name}")


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Worker:
    """One worker process and its connection; used by its dispatcher thread only (and `kill`
    by the pool's `join` at shutdown)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.conn: Connection | None = None
        # key -> None when built, else the worker's refusal (see _build_error)
        self.built: dict[int, tuple[Any, ...] | None] = {}
        self.killed = False
        self.ready = False  # started, guardrails imported, answering

    @property
    def pid(self) -> int | None:
        """The process's pid once it has said it is ready."""
        process = self.process
        return process.pid if process is not None and self.ready else None

    def usable(self) -> bool:
        return self.process is not None and not self.killed and self.process.poll() is None

    def start(self) -> None:
        """A fresh interpreter with the router's sys.path; returns once guardrails is
        imported offline there. WorkerGone when it does not get that far."""
        self.stop()
        ours, theirs = socket.socketpair()
        # The router's sys.path, as multiprocessing's spawn passes it: an allow-listed module
        # importable in the router is importable in the worker.
        bootstrap = (
            "import sys; sys.path[:] = sys.argv[3:]; "
            "from guards.validator_worker import main; "
            "main(int(sys.argv[1]), int(sys.argv[2]))"
        )
        args = [sys.executable, "-c", bootstrap, str(theirs.fileno()), str(os.getpid())]
        try:
            # Our own interpreter running our own module: nothing here comes from a policy.
            self.process = subprocess.Popen(  # noqa: S603
                [*args, *sys.path],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # a validator's prints stay out of the router's
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            ours.close()
            raise WorkerGone(f"could not start: {exc}") from None
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.killed = False
        self.built = {}
        reply = self.ask(None, START_TIMEOUT_S)
        if reply[0] != "ready":
            raise WorkerGone(f"could not start: {reply[1]}")
        self.ready = True

    def ask(self, message: tuple[Any, ...] | None, timeout_s: float | None = None) -> Any:
        """Send one message (None: send nothing) and wait for its reply; WorkerGone when the
        worker dies first or `timeout_s` passes (then it is killed)."""
        conn, process = self.conn, self.process
        assert conn is not None and process is not None
        try:
            if message is not None:
                conn.send(message)
            if timeout_s is not None and not conn.poll(timeout_s):
                self.kill()
                raise WorkerGone(f"no answer in {timeout_s:.1f} s", overran=True)
            return PlainUnpickler(io.BytesIO(conn.recv_bytes())).load()
        except (EOFError, OSError):
            try:
                code = process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                code = None
            raise WorkerGone(_exit_text(code)) from None

    def kill(self) -> None:
        self.killed = True
        self.ready = False
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def stop(self) -> None:
        """End the process (EOF first, so its exit handlers run; SIGKILL after a grace) and
        reap it: no zombie is left behind."""
        conn, process = self.conn, self.process
        self.conn = self.process = None
        self.ready = False
        if conn is not None:
            conn.close()
        if process is None:
            return
        try:
            process.wait(0 if self.killed else STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

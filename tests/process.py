"""Free ports, waiting until a server is SERVING, and server processes started by tests.

Every test that runs `mesh up|node|router|bridge` (or vLLM's own server) as a subprocess goes
through `ServerProcess`, so each gets the same guarantees: the output goes to a log file (a
pipe nobody drains fills up and blocks the child), every wait is bounded and fails at once if
the process dies, a failed start shows the last lines of that log, and the process always
ends: SIGTERM, then SIGKILL for its whole process group (engine workers included) after a
grace period.

The waits block. An async test awaits the `*_async` forms, which run them in a thread so that
servers on the test's own event loop (a registry, a fault injector) keep answering meanwhile.

Kept apart from tests/helpers.py (requests, answers, in-process checks): this module starts
and watches processes, and imports nothing from the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# This interpreter's `python -m mesh`: the code under test is what PYTHONPATH points at.
MESH: tuple[str, ...] = (sys.executable, "-m", "mesh")
START_TIMEOUT_S = 240.0  # an engine start on 2 busy cores; a broken start fails long before
STOP_GRACE_S = 60.0
TAIL_LINES = 40


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_address() -> str:
    return f"127.0.0.1:{free_port()}"


def wait_for(
    predicate: Callable[[], bool],
    what: str,
    *,
    timeout_s: float = START_TIMEOUT_S,
    process: ServerProcess | None = None,
    poll_s: float = 0.3,
) -> None:
    """Poll until `predicate` holds; fail after `timeout_s`, or as soon as `process` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if process is not None and process.returncode is not None:
            raise AssertionError(
                f"{process.name} exited with code {process.returncode} before {what}\n"
                + process.tail()
            )
        if time.monotonic() > deadline:
            shown = f"\n{process.tail()}" if process is not None else ""
            raise AssertionError(f"not {what} after {timeout_s:.0f} s{shown}")
        time.sleep(poll_s)


def wait_until_serving(
    address: str, *, timeout_s: float = START_TIMEOUT_S, process: ServerProcess | None = None
) -> None:
    """Until the server on `address` says SERVING for "" (the whole server) on grpc.health.v1."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        wait_for(serving, f"SERVING on {address}", timeout_s=timeout_s, process=process)


class ServerProcess:
    """A long-running child process (its own process group) writing everything to `log`.

    Use it as a context manager (`with` or `async with`): leaving the block stops it.
    """

    def __init__(
        self,
        command: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.command = list(command)
        self.log = log
        self.name = name or " ".join(self.command[:4])
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                # Its own process group: one killpg ends the engine workers it started too.
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code; None while it runs."""
        return self._proc.poll()

    def output(self) -> str:
        """Everything it wrote so far, stdout and stderr interleaved."""
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = TAIL_LINES) -> str:
        last = self.output().splitlines()[-lines:]
        return f"--- last {len(last)} lines of {self.log} ---\n" + "\n".join(last)

    def wait_for(
        self, predicate: Callable[[], bool], what: str, *, timeout_s: float = START_TIMEOUT_S
    ) -> None:
        """Until `predicate` holds (say, an HTTP health check); fails if the process exits."""
        wait_for(predicate, what, timeout_s=timeout_s, process=self)

    def wait_for_output(self, pattern: str, *, timeout_s: float = START_TIMEOUT_S) -> re.Match[str]:
        """The first match of `pattern` (re.MULTILINE) in the output, once it is there."""
        regex = re.compile(pattern, re.MULTILINE)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = regex.search(self.output())
            if match is not None:
                found.append(match)
            return match is not None

        wait_for(seen, f"printing {pattern!r}", timeout_s=timeout_s, process=self)
        return found[0]

    def wait_until_serving(self, address: str, *, timeout_s: float = START_TIMEOUT_S) -> None:
        wait_until_serving(address, timeout_s=timeout_s, process=self)

    def terminate(self) -> None:
        """SIGTERM to the process itself (not its group): what an operator's stop sends."""
        if self.returncode is None:
            self._proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout_s: float = STOP_GRACE_S) -> int:
        """Its exit code once it exits; fails (it keeps running) after `timeout_s`."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running {timeout_s:.0f} s later\n{self.tail()}"
            ) from None

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM, then SIGKILL for the whole group after `grace_s`; returns the exit code.

        Whatever of its group outlives it (a stray worker) is killed too.
        """
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        return self._proc.wait(timeout=30)

    # The same waits for async tests, in a thread: the test's event loop keeps serving.
    async def wait_for_output_async(
        self, pattern: str, *, timeout_s: float = START_TIMEOUT_S
    ) -> re.Match[str]:
        return await asyncio.to_thread(self.wait_for_output, pattern, timeout_s=timeout_s)

    async def wait_until_serving_async(
        self, address: str, *, timeout_s: float = START_TIMEOUT_S
    ) -> None:
        await asyncio.to_thread(self.wait_until_serving, address, timeout_s=timeout_s)

    async def wait_exit_async(self, timeout_s: float = STOP_GRACE_S) -> int:
        return await asyncio.to_thread(self.wait_exit, timeout_s)

    async def stop_async(self, grace_s: float = STOP_GRACE_S) -> int:
        return await asyncio.to_thread(self.stop, grace_s)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ServerProcess:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop_async()


def start_mesh(
    *args: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    mesh: Sequence[str] = MESH,
) -> ServerProcess:
    """`mesh <args>` (up, node, router, bridge, ...) as a ServerProcess logging to `log`."""
    return ServerProcess([*mesh, *args], log, env=env, name=f"mesh {' '.join(args[:1])}")


def run_mesh(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 180,
    stdin: str | None = None,
    mesh: Sequence[str] = MESH,
) -> subprocess.CompletedProcess[str]:
    """A one-shot `mesh` command (chat, costs, trace, ...), its output captured as text."""
    return subprocess.run(
        [*mesh, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=dict(env) if env is not None else None,
        check=False,
    )

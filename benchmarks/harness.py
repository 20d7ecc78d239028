"""What every benchmark suite shares: processes, ports, readiness, resource readings, timing.

One copy of each (the suites used to carry their own). Servers run in their own process and
process group, their logs go to files, and everything stops by itself: readiness waits and
requests have timeouts, and a server gets SIGTERM, then SIGKILL for its whole group.
Statistics and the summary table live in `benchmarks.stats`.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import grpc
import psutil

from benchmarks.stats import Figure, Plan, summarise

READY_TIMEOUT_S = 180.0  # a router loading MiniLM on 2 busy cores takes tens of seconds
STOP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 60.0

Sample = Mapping[str, float]
Probe = Callable[[], Awaitable[Sample]]


def versions() -> str:
    return f"python {platform.python_version()}  grpcio {grpc.__version__}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback() -> str:
    """A free loopback address host:port (free when asked; the server binds it soon after)."""
    return f"127.0.0.1:{free_port()}"


# --- processes ------------------------------------------------------------------------------
Ready = Callable[[subprocess.Popen[bytes]], None]


@contextmanager
def server(
    args: Sequence[str], ready: Ready, *, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group, wait until `ready` returns, stop it on exit."""
    # Logs go to a file: an unread pipe fills up and freezes a chatty server mid-request.
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            list(args), env=dict(env), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            ready(proc)
            yield proc
        except BaseException:
            tail = log.read_text(errors="replace").splitlines()[-20:]
            sys.stderr.write(f"--- last lines of {log}:\n" + "\n".join(tail) + "\n")
            raise
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process group, then SIGKILL to what is left of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
            if sig == signal.SIGTERM:
                os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def _poll(proc: subprocess.Popen[bytes], check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready after {READY_TIMEOUT_S:.0f} s")


def grpc_ready(address: str) -> Ready:
    """Ready once the InferenceService at `address` lists a model (a router: an upstream's)."""
    from mesh.v1 import inference_pb2, inference_pb2_grpc

    def wait(proc: subprocess.Popen[bytes]) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)

            def check() -> bool:
                try:
                    return bool(
                        stub.ListModels(inference_pb2.ListModelsRequest(), timeout=1).models
                    )
                except grpc.RpcError:
                    return False

            _poll(proc, check, address)

    return wait


def http_ready(url: str, headers: Mapping[str, str] | None = None) -> Ready:
    """Ready once GET `url` answers 200."""

    def wait(proc: subprocess.Popen[bytes]) -> None:
        def check() -> bool:
            request = urllib.request.Request(url, headers=dict(headers or {}))
            try:
                with urllib.request.urlopen(request, timeout=2) as reply:  # loopback only
                    return int(reply.status) == 200
            except (urllib.error.URLError, OSError):
                return False

        _poll(proc, check, url)

    return wait


# --- resources ------------------------------------------------------------------------------
def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process and its children (workers count)."""
    total = 0.0
    for proc in _tree(pid):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_note(requests: int) -> str:
    """CPU times come in clock ticks: say what one tick is worth per request."""
    per_request = 1e3 / os.sysconf("SC_CLK_TCK") / requests
    return f"CPU time resolution {per_request:.2f} ms/req ({requests} requests)"


def rss_mb(pid: int) -> float:
    """Resident memory now of a process and its children, in MB."""
    return sum(_status_kb(p.pid, "VmRSS") for p in _tree(pid)) / 1024


def peak_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process plus its children's peaks, in MB."""
    return sum(_status_kb(p.pid, "VmHWM") for p in _tree(pid)) / 1024


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


# --- timing ---------------------------------------------------------------------------------
def timed(call: Callable[[], Awaitable[bool]]) -> Probe:
    """A probe measuring one call's wall time as {"ms": ...}; no sample when the call says
    it failed (returned False)."""

    async def probe() -> Sample:
        start = time.perf_counter()
        if not await call():
            return {}
        return {"ms": (time.perf_counter() - start) * 1e3}

    return probe


async def warm_up(paths: Mapping[str, Probe], plan: Plan) -> None:
    """First calls open channels and pools and load what loads lazily: not measured."""
    for probe in paths.values():
        for _ in range(plan.warmup):
            await probe()
    await asyncio.sleep(0.5)  # let background work of the warm-up settle


async def interleaved(paths: Mapping[str, Probe], plan: Plan) -> dict[str, dict[str, Figure]]:
    """BENCH.md rounds: each path in turn, `plan.per_round` calls each, `plan.rounds` times.

    Returns, per path and per measurement the probe reports, the median of round medians
    and the median of round p99s. Call `warm_up` first.
    """
    rounds: dict[str, dict[str, list[list[float]]]] = {name: {} for name in paths}
    for _ in range(plan.rounds):
        for name, probe in paths.items():
            samples: dict[str, list[float]] = {}
            for _ in range(plan.per_round):
                for key, value in (await probe()).items():
                    samples.setdefault(key, []).append(value)
            for key, values in samples.items():
                rounds[name].setdefault(key, []).append(values)
    return {
        name: {key: summarise(per_round) for key, per_round in by_key.items()}
        for name, by_key in rounds.items()
    }


async def throughput(call: Callable[[], Awaitable[object]], concurrency: int, total: int) -> float:
    """Requests per second with `concurrency` callers sharing `total` requests."""
    left = iter(range(total))

    async def worker() -> None:
        for _ in left:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def throughput_and_cpu(
    call: Callable[[], Awaitable[object]], plan: Plan, pids: Mapping[str, int]
) -> dict[str, float]:
    """rps at each concurrency of the plan; CPU ms per request of each process at the highest."""
    out: dict[str, float] = {}
    top = max(plan.concurrencies)
    for conc in plan.concurrencies:
        before = {name: cpu_s(pid) for name, pid in pids.items()}
        out[f"rps_c{conc}"] = await throughput(call, conc, plan.throughput_requests)
        if conc == top:
            for name, pid in pids.items():
                used = cpu_s(pid) - before[name]
                out[f"cpu_ms_{name}"] = 1e3 * used / plan.throughput_requests
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")

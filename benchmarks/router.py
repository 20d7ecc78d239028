"""Router overhead (BENCH.md method): D client->node, N client->do-nothing relay->node,
R client->router->node, in interleaved rounds, each server in its own process.

The node runs FakeEngine (a fast deterministic test engine, named as such) so what is measured
is the mesh's own cost. Two router set-ups: "R lean" (guards on, default tracing, a pinned
model, the exact cache tier only and a features-only tier estimator: MiniLM is never loaded) and
"R auto" (the defaults: cheapest-capable with the MiniLM tier estimate and a semantic cache
lookup on a miss, which share one embedding per new prompt). Figures are medians of round medians,
printed raw and as ratios against D and N measured in the same run.
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
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import grpc.aio

from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

ROUNDS = 5
PER_ROUND = 60
THROUGHPUT_REQUESTS = 192


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _process(
    args: list[str], address: str, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    # Logs go to a file: an unread pipe fills up and freezes a chatty server mid-request.
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            _wait_ready(address, proc)
            yield proc
        except BaseException:
            sys.stderr.write(f"--- last lines of {log}:\n")
            sys.stderr.write("\n".join(log.read_text(errors="replace").splitlines()[-20:]) + "\n")
            raise
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident (VmRSS) or peak resident (VmHWM) memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_ready(address: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            try:
                if stub.ListModels(inference_pb2.ListModelsRequest(), timeout=1).models:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise RuntimeError(f"{address} not ready")


def _request(i: int, pinned: bool) -> inference_pb2.GenerateRequest:
    req = inference_pb2.GenerateRequest(
        messages=[
            types_pb2.ChatMessage(
                role=types_pb2.ROLE_USER, content=f"What is the capital of France? ({i})"
            )
        ],
        sampling=types_pb2.SamplingParams(max_tokens=8, temperature=0.0),
    )
    if pinned:
        req.routing.model = "fake-model"
    return req


async def _latencies(
    stub: inference_pb2_grpc.InferenceServiceStub, n: int, make: Callable[[int], object]
) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        await stub.Generate(make(i), timeout=60)
        out.append((time.perf_counter() - start) * 1e3)
    return out


async def _throughput(
    stub: inference_pb2_grpc.InferenceServiceStub, concurrency: int, make: Callable[[int], object]
) -> float:
    counter = iter(range(THROUGHPUT_REQUESTS))

    async def worker() -> None:
        for i in counter:
            await stub.Generate(make(i), timeout=60)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return THROUGHPUT_REQUESTS / (time.perf_counter() - start)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def _measure(
    paths: dict[str, tuple[str, bool]], front_pids: dict[str, int]
) -> dict[str, dict[str, float]]:
    channels = {name: grpc.aio.insecure_channel(addr) for name, (addr, _) in paths.items()}
    stubs = {name: inference_pb2_grpc.InferenceServiceStub(ch) for name, ch in channels.items()}
    medians: dict[str, list[float]] = {name: [] for name in paths}
    p99s: dict[str, list[float]] = {name: [] for name in paths}
    counter = iter(range(10**9))
    for name, (_, pinned) in paths.items():  # warm up channels, caches of the path
        await _latencies(stubs[name], 10, lambda i, p=pinned: _request(next(counter), p))
    for _ in range(ROUNDS):
        for name, (_, pinned) in paths.items():
            lat = await _latencies(
                stubs[name], PER_ROUND, lambda i, p=pinned: _request(next(counter), p)
            )
            medians[name].append(statistics.median(lat))
            p99s[name].append(_p99(lat))
    results: dict[str, dict[str, float]] = {}
    for name, (_, pinned) in paths.items():
        results[name] = {
            "p50_ms": statistics.median(medians[name]),
            "p99_ms": statistics.median(p99s[name]),
        }
        for conc in (1, 8, 32):
            cpu_before = _cpu_s(front_pids[name])
            results[name][f"rps_c{conc}"] = await _throughput(
                stubs[name], conc, lambda i, p=pinned: _request(next(counter), p)
            )
            if conc == 32:
                used = _cpu_s(front_pids[name]) - cpu_before
                results[name]["cpu_ms_per_req"] = 1e3 * used / THROUGHPUT_REQUESTS
    for ch in channels.values():
        await ch.close()
    return results


def main() -> int:
    print(f"python {platform.python_version()}  grpcio {grpc.__version__}")
    workdir = Path(tempfile.mkdtemp(prefix="mesh-bench-router-"))
    env = {**os.environ, "MESH_DATA_DIR": str(workdir), "MESH_API_KEY": ""}
    env.pop("MESH_REGISTRY_TOKEN", None)
    py = sys.executable
    node, relay, lean_router, auto_router = (f"127.0.0.1:{_port()}" for _ in range(4))
    node_cmd = [py, "-m", "mesh", "node", "--engine", "fake", "--model", "fake-model"]
    node_cmd += ["--listen", node, "--node-id", "fake-node", "--max-inflight", "256"]
    node_cmd += ["--metrics-listen", "off"]
    upstreams = "  upstreams: [{id: fake-node, address: '" + node + "'}]\n"
    no_metrics = "telemetry: {prometheus_listen: null}\n"
    lean, auto = workdir / "lean.yaml", workdir / "auto.yaml"
    # Lean: no MiniLM anywhere (features-only tier estimate, exact cache tier), so what is
    # left is the router's own cost: guards, tracing, budget, ledger, forwarding.
    lean.write_text(
        no_metrics
        + "router:\n"
        + upstreams
        + "  cache: {semantic: false}\n"
        + "  routing: {estimator: {embeddings: false}}\n"
    )
    auto.write_text(no_metrics + "router:\n" + upstreams)
    with _process(node_cmd, node, env, workdir / "node.log") as node_proc:
        relay_cmd = [py, "-m", "benchmarks.relay", "--listen", relay, "--target", node]
        router_cmd = [py, "-m", "mesh", "router", "--listen"]
        with (
            _process(relay_cmd, relay, env, workdir / "relay.log") as relay_proc,
            _process(
                [*router_cmd, lean_router, "--config", str(lean)],
                lean_router,
                env,
                workdir / "lean.log",
            ) as lean_proc,
            _process(
                [*router_cmd, auto_router, "--config", str(auto)],
                auto_router,
                env,
                workdir / "auto.log",
            ) as auto_proc,
        ):
            pids = {
                "D node": node_proc.pid,
                "N relay": relay_proc.pid,
                "R lean": lean_proc.pid,
                "R auto": auto_proc.pid,
            }
            idle_mb = {name: _rss_mb(pid) for name, pid in pids.items()}
            results = asyncio.run(
                _measure(
                    {
                        "D node": (node, True),
                        "N relay": (relay, True),
                        "R lean": (lean_router, True),
                        "R auto": (auto_router, False),
                    },
                    pids,
                )
            )
            for name, pid in pids.items():
                results[name]["idle_mb"] = idle_mb[name]
                results[name]["peak_mb"] = _rss_mb(pid, "VmHWM")
    _report(results)
    print(f"logs: {workdir}")
    return 0


def _report(results: dict[str, dict[str, float]]) -> None:
    d = results["D node"]
    h_n = results["N relay"]["p50_ms"] - d["p50_ms"]
    header = ("p50 ms", "p99 ms", "rps c1", "rps c8", "rps c32", "cpu ms/req", "idle MB", "peak MB")
    print(f"{'path':<10}" + "".join(f"{h:>11}" for h in header))
    for name, r in results.items():
        values = (r["p50_ms"], r["p99_ms"], r["rps_c1"], r["rps_c8"], r["rps_c32"])
        values += (r["cpu_ms_per_req"], r["idle_mb"], r["peak_mb"])
        print(f"{name:<10}" + "".join(f"{v:11.2f}" for v in values))
    print("cpu ms/req: the front process (node, relay or router) at concurrency 32")
    for name in ("R lean", "R auto"):
        r = results[name]
        h_r = r["p50_ms"] - d["p50_ms"]
        print(
            f"{name}: added p50 {h_r:.2f} ms = {h_r / h_n:.2f} x relay's (target <= 1.1); "
            f"p99 {r['p99_ms'] / results['N relay']['p99_ms']:.2f} x relay's (target <= 1.5); "
            f"throughput c32 {r['rps_c32'] / d['rps_c32']:.2f} x direct (target >= 0.55); "
            f"idle RSS {r['idle_mb']:.0f} MB (target <= 60)"
        )


if __name__ == "__main__":
    sys.exit(main())

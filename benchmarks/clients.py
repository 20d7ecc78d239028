"""The gRPC client side of the suites: requests, one path's calls, and what the path saw."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import grpc.aio

from benchmarks.fleet import FAKE_MODEL, Started
from benchmarks.harness import (
    REQUEST_TIMEOUT_S,
    Sample,
    interleaved,
    peak_mb,
    rss_mb,
    throughput_and_cpu,
    timed,
    warm_up,
)
from benchmarks.prompts import REPEATED_PROMPT
from benchmarks.stats import Figure, Plan
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

MAX_TOKENS = 16  # FakeEngine answers 8 one-word chunks: the whole answer fits
ANSWER_CHUNKS = 8


def generate_request(prompt: str, *, pinned: bool) -> inference_pb2.GenerateRequest:
    req = inference_pb2.GenerateRequest(
        messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=prompt)],
        sampling=types_pb2.SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0),
    )
    if pinned:
        req.routing.model = FAKE_MODEL
    return req


def stream_request(prompt: str, *, pinned: bool) -> inference_pb2.GenerateStreamRequest:
    return inference_pb2.GenerateStreamRequest.FromString(
        generate_request(prompt, pinned=pinned).SerializeToString()
    )


def repeated() -> Iterator[str]:
    return itertools.repeat(REPEATED_PROMPT)


class ClientPath(Protocol):
    """What `measure_unary` needs of a path, whatever its protocol (gRPC, HTTP)."""

    processes: dict[str, int]  # role -> pid of the servers on the path
    sent: int
    cache_hits: int
    errors: int

    async def call(self) -> bool:
        """One request; False when it failed in a way the path counts instead of raising."""
        ...


# A router on a loaded machine may mark its node down for a moment (its health probe timed
# out) and answer UNAVAILABLE: such replies are counted and reported, not measured. Any other
# error, or more than MAX_ERROR_SHARE of them, stops the suite: the figures would mean nothing.
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE})
MAX_ERROR_SHARE = 0.05


@dataclass
class GrpcPath:
    """One client path: a stub, its prompts, pinned or routed, and what it saw (cache hits,
    transient errors)."""

    stub: inference_pb2_grpc.InferenceServiceStub
    prompts: Iterator[str]
    pinned: bool
    processes: dict[str, int] = field(default_factory=dict)  # role -> pid, for CPU and RSS
    sent: int = 0
    cache_hits: int = 0
    errors: int = 0

    def count_error(self, err: grpc.aio.AioRpcError) -> None:
        """Count a transient error; raise any other, or too many of them."""
        if err.code() not in TRANSIENT:
            raise err
        self.errors += 1
        if self.errors > max(3.0, MAX_ERROR_SHARE * (self.sent + self.errors)):
            raise RuntimeError(f"{self.errors} {err.code().name} replies: {err.details()}") from err

    async def call(self) -> bool:
        """One unary Generate."""
        request = generate_request(next(self.prompts), pinned=self.pinned)
        try:
            reply = await self.stub.Generate(request, timeout=REQUEST_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            self.count_error(err)
            return False
        self.sent += 1
        self.cache_hits += reply.route.cache_hit
        return True

    async def stream(self) -> Sample:
        """One GenerateStream: ms to the first text chunk, to the end, and per answer chunk."""
        request = stream_request(next(self.prompts), pinned=self.pinned)
        start = time.perf_counter()
        first = last = 0.0
        deltas = 0
        try:
            async for event in self.stub.GenerateStream(request, timeout=REQUEST_TIMEOUT_S):
                if event.HasField("delta") and event.delta.text:
                    last = time.perf_counter()
                    first = first or last
                    deltas += 1
                elif event.HasField("summary"):
                    self.cache_hits += event.summary.route.cache_hit
        except grpc.aio.AioRpcError as err:
            self.count_error(err)
            return {}
        end = time.perf_counter()
        self.sent += 1
        return {
            "ttfc": (first - start) * 1e3,
            "total": (end - start) * 1e3,
            # The spread of the answer's chunks over its chunk count, however many messages
            # carried them (a router that holds text back delivers fewer, later).
            "gap": (last - first) * 1e3 / (ANSWER_CHUNKS - 1),
            "deltas": float(deltas),
        }


@asynccontextmanager
async def open_paths(
    started: Started, prompts: Callable[[str], Iterator[str]], pinned: Callable[[str], bool]
) -> AsyncIterator[dict[str, GrpcPath]]:
    """A channel and GrpcPath per started path (channels are bound to the running loop)."""
    channels = {name: grpc.aio.insecure_channel(addr) for name, (addr, _) in started.items()}
    try:
        yield {
            name: GrpcPath(
                inference_pb2_grpc.InferenceServiceStub(channels[name]),
                prompts(name),
                pinned(name),
                processes=dict(pids),
            )
            for name, (_, pids) in started.items()
        }
    finally:
        for channel in channels.values():
            await channel.close()


@dataclass(frozen=True)
class PathResult:
    """A path's latency over rounds and its other numbers (p50_ms, rps_c32, cpu_ms_ROLE, ...)."""

    latency: Figure
    numbers: dict[str, float]

    def __getitem__(self, key: str) -> float:
        return self.numbers[key]

    def get(self, key: str, default: float) -> float:
        return self.numbers.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.numbers)


async def measure_unary(paths: Mapping[str, ClientPath], plan: Plan) -> dict[str, PathResult]:
    """Latency (interleaved rounds), then throughput and CPU per process, path by path.

    Idle RSS is read after the warm-up, at rest: what loads lazily (MiniLM) counts.
    """
    probes = {name: timed(p.call) for name, p in paths.items()}
    await warm_up(probes, plan)
    idle = {n: {role: rss_mb(pid) for role, pid in p.processes.items()} for n, p in paths.items()}
    latency = await interleaved(probes, plan)
    results: dict[str, PathResult] = {}
    for name, path in paths.items():
        fig = latency[name]["ms"]
        r = {"p50_ms": fig.p50, "p99_ms": fig.p99}
        r.update(await throughput_and_cpu(path.call, plan, path.processes))
        for role, pid in path.processes.items():
            r[f"idle_mb_{role}"] = idle[name][role]
            r[f"peak_mb_{role}"] = peak_mb(pid)
        r["cache_hits"] = path.cache_hits
        r["sent"] = path.sent
        r["errors"] = path.errors
        results[name] = PathResult(fig, r)
    return results


def hits_and_errors(r: PathResult) -> str:
    """'cache hits/answers', and the transient errors when there were any."""
    text = f"{r['cache_hits']:.0f}/{r['sent']:.0f}"
    return text + (f", {r['errors']:.0f} errors" if r.get("errors", 0) else "")

"""LiteLLM's proxy measured beside the mesh, both in front of one fast fake OpenAI-compatible
upstream (benchmarks.fake_openai), in the same interleaved rounds:

- A: client -> upstream directly (HTTP, aiohttp: a light client, so the bench process's own
     cost does not cap the fast direct path at c32) - the baseline of "added";
- L: client -> LiteLLM proxy (its own venv, one worker, no database, no callbacks,
     telemetry off, a master key) -> upstream;
- B: client (gRPC) -> `mesh bridge --provider openai-compatible` -> upstream (the bridge's share);
- M: client (gRPC) -> `mesh router` (shipped default config, distinct prompts) -> the bridge
     -> upstream;
- H: client (HTTP, the same aiohttp client as A and L) -> the same router's OpenAI-compatible
     HTTP front -> the bridge -> upstream: LiteLLM's own wire format, client for client.

Each path's added latency over A (p50, p99), throughput at concurrency 1/8/32, CPU ms per
request of each process and RSS. Then SSE through the HTTP doors (A, L, H with
`"stream": true`): the time to the first text delta and to `[DONE]`, added over A. The gRPC
paths' added time includes the difference between a gRPC and an HTTP client. Targets (issues
12 and 17): the mesh's added p50 <= 0.5 x LiteLLM's and its c32 throughput >= 3 x LiteLLM's,
through the gRPC door and through the HTTP front; the SSE first chunk's added time <= LiteLLM's
(issue 17's target for streams).
Without a LiteLLM venv (no index, pip failure) the suite says so in one line and measures
nothing.

Run: python -m benchmarks.litellm_beside [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import litellm_venv
from benchmarks.clients import ClientPath, PathResult, hits_and_errors, measure_unary, open_paths
from benchmarks.fleet import FAKE_MODEL, Fleet, Started, fleet, mesh_command
from benchmarks.harness import (
    REQUEST_TIMEOUT_S,
    Probe,
    Sample,
    cpu_note,
    free_port,
    grpc_ready,
    http_ready,
    interleaved,
    loopback,
    versions,
    warm_up,
)
from benchmarks.prompts import distinct_prompts
from benchmarks.stats import (
    Figure,
    Plan,
    Row,
    added,
    fmt,
    paired_added,
    ratio,
    suite_arguments,
    text_table,
    write_rows,
)

UPSTREAM_KEY_ENV = "BENCH_FAKE_UPSTREAM_KEY"  # the fake upstream accepts any key
BRIDGE_ID = "bench-bridge"


def litellm_config(upstream_url: str, master_key: str) -> str:
    return (
        "model_list:\n"
        f"  - model_name: {FAKE_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{FAKE_MODEL}\n"
        f"      api_base: {upstream_url}/v1\n"
        "      api_key: fake-key\n"
        "general_settings:\n"
        f"  master_key: {master_key}\n"
    )


@dataclass
class HttpPath:
    """A chat completion over HTTP (aiohttp, keep-alive) to `url`, bearer key if given."""

    session: aiohttp.ClientSession
    url: str
    prompts: Iterator[str]
    key: str = ""
    model: str = FAKE_MODEL
    processes: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    cache_hits: int = 0
    errors: int = 0  # any HTTP error stops the suite

    def _post(self, *, stream: bool) -> Any:
        """The next prompt as a chat completion request (the same body for every path)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": next(self.prompts)}],
            "max_tokens": 16,
            "temperature": 0.0,
        }
        if stream:
            body["stream"] = True
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return self.session.post(self.url, json=body, headers=headers)

    async def call(self) -> bool:
        async with self._post(stream=False) as reply:
            reply.raise_for_status()
            answer = await reply.json()
        if not answer["choices"][0]["message"]["content"]:
            raise RuntimeError(f"{self.url}: empty answer")
        self.sent += 1
        return True

    async def stream(self) -> Sample:
        """One SSE chat completion: ms to the first text delta, and to `data: [DONE]`."""
        start = time.perf_counter()
        first = 0.0
        async with self._post(stream=True) as reply:
            reply.raise_for_status()
            async for line in reply.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if not first and (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter()
        end = time.perf_counter()
        if not first:
            raise RuntimeError(f"{self.url}: a stream without text")
        self.sent += 1
        return {"ttfc": (first - start) * 1e3, "whole": (end - start) * 1e3}


@dataclass(frozen=True)
class Endpoints:
    """Where the servers of this suite listen."""

    grpc: Started  # B and M: address and pids
    upstream_url: str
    litellm_url: str
    master_key: str
    router_http_url: str


def start(f: Fleet, python: Path) -> Endpoints:
    """Upstream, LiteLLM, bridge and router, each in its own process."""
    upstream_address = loopback()
    upstream = f"http://{upstream_address}"
    upstream_pid = f.start(
        "upstream",
        [sys.executable, "-m", "benchmarks.fake_openai", "--listen", upstream_address],
        http_ready(upstream + "/v1/models"),
    )
    master_key = "sk-bench-" + secrets.token_hex(8)
    config = f.workdir / "litellm.yaml"
    config.write_text(litellm_config(upstream, master_key))
    port = free_port()
    litellm_url = f"http://127.0.0.1:{port}"
    litellm_args = [str(python), "-m", "litellm.proxy.proxy_cli", "--config", str(config)]
    litellm_args += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    litellm_pid = f.start(
        "litellm",
        litellm_args,
        http_ready(litellm_url + "/health/liveliness"),
        LITELLM_TELEMETRY="False",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        PYTHONPATH="",  # its venv only, not the project's sources
    )
    bridge = loopback()
    bridge_args = mesh_command("bridge", "--provider", "openai-compatible", "--model", FAKE_MODEL)
    bridge_args += ["--base-url", upstream + "/v1", "--api-key-env", UPSTREAM_KEY_ENV]
    bridge_args += ["--listen", bridge, "--node-id", BRIDGE_ID, "--metrics-listen", "off"]
    bridge_args += ["--tier", "frontier", "--price-in", "0.1", "--price-out", "0.2"]
    bridge_args += ["--max-concurrent", "64"]  # LiteLLM has no such cap: neither queues at c32
    bridge_pid = f.start("bridge", bridge_args, grpc_ready(bridge), **{UPSTREAM_KEY_ENV: "fake"})
    router = loopback()
    router_http = f"http://{loopback()}"
    router_pid = f.router(
        "router", "default", router, [(BRIDGE_ID, bridge)], router_http.removeprefix("http://")
    )
    f.pids.update(router=router_pid, bridge=bridge_pid)
    f.pids.update(upstream=upstream_pid, litellm=litellm_pid)
    grpc_paths: Started = {
        "B bridge": (bridge, {"bridge": bridge_pid, "upstream": upstream_pid}),
        "M mesh": (router, {"router": router_pid, "bridge": bridge_pid, "upstream": upstream_pid}),
    }
    return Endpoints(grpc_paths, upstream, litellm_url, master_key, router_http)


Streamed = dict[str, dict[str, Figure]]
STREAMED = ("A direct", "L litellm", "H mesh http")


def run(plan: Plan, python: Path) -> tuple[dict[str, PathResult], Streamed]:
    with fleet() as f:
        at = start(f, python)

        async def go() -> tuple[dict[str, PathResult], Streamed]:
            connector = aiohttp.TCPConnector(limit=64)
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                open_paths(
                    at.grpc,
                    prompts=lambda _: distinct_prompts(),
                    pinned=lambda name: name == "B bridge",
                ) as grpc_paths,
            ):
                paths: dict[str, ClientPath] = {
                    "A direct": HttpPath(
                        session,
                        at.upstream_url + "/v1/chat/completions",
                        distinct_prompts(),
                        processes={"upstream": f.pids["upstream"]},
                    ),
                    "L litellm": HttpPath(
                        session,
                        at.litellm_url + "/v1/chat/completions",
                        distinct_prompts(),
                        key=at.master_key,
                        processes={"litellm": f.pids["litellm"], "upstream": f.pids["upstream"]},
                    ),
                    **grpc_paths,
                    "H mesh http": HttpPath(
                        session,
                        at.router_http_url + "/v1/chat/completions",
                        # Not M's prompts: the same router would answer them from its cache.
                        (f"{p} Keep it short." for p in distinct_prompts(seed=11)),
                        model="auto",
                        processes={
                            "router": f.pids["router"],
                            "bridge": f.pids["bridge"],
                            "upstream": f.pids["upstream"],
                        },
                    ),
                }
                unary = await measure_unary(paths, plan)
                # SSE through the HTTP doors, the same paths' clients, after the unary rounds.
                http = {name: paths[name] for name in STREAMED}
                probes: dict[str, Probe] = {
                    name: path.stream for name, path in http.items() if isinstance(path, HttpPath)
                }
                await warm_up(probes, plan)
                return unary, await interleaved(probes, plan)

        return asyncio.run(go())


def rows(r: dict[str, PathResult]) -> list[Row]:
    a, lite, mesh, http = r["A direct"], r["L litellm"], r["M mesh"], r["H mesh http"]
    h_l = paired_added(lite.latency, a.latency)
    h_m = paired_added(mesh.latency, a.latency)
    h_h = paired_added(http.latency, a.latency)
    return [
        Row(
            "default config: added p50 vs LiteLLM's",
            f"mesh +{h_m:.2f} ms / LiteLLM +{h_l:.2f} ms",
            ratio(h_m, h_l), 0.5, "<=",
        ),
        Row(
            "default config: c32 throughput vs LiteLLM's",
            f"{mesh['rps_c32']:.0f} / {lite['rps_c32']:.0f} rps",
            ratio(mesh["rps_c32"], lite["rps_c32"]), 3.0, ">=",
        ),
        Row(
            "HTTP front (default config): added p50 vs LiteLLM's",
            f"mesh http +{h_h:.2f} ms / LiteLLM +{h_l:.2f} ms",
            ratio(h_h, h_l), 0.5, "<=",  # issue 17: <= 0.5x LiteLLM's added p50 in the same run
        ),
        Row(
            "HTTP front (default config): c32 throughput vs LiteLLM's",
            f"{http['rps_c32']:.0f} / {lite['rps_c32']:.0f} rps",
            ratio(http["rps_c32"], lite["rps_c32"]), 3.0, ">=",
        ),
    ]  # fmt: skip


def stream_rows(streamed: Streamed) -> list[Row]:
    a, lite, http = (streamed[name]["ttfc"] for name in STREAMED)
    h_l, h_h = paired_added(lite, a), paired_added(http, a)
    return [
        Row(
            "HTTP front SSE: added time to first chunk vs LiteLLM's",
            f"mesh http +{h_h:.2f} ms / LiteLLM +{h_l:.2f} ms",
            ratio(h_h, h_l), 1.0, "<=",
        ),
    ]  # fmt: skip


def stream_report(streamed: Streamed) -> None:
    a = streamed["A direct"]
    head = ["path (SSE)", "first chunk ms", "+first chunk", "p99 first", "whole ms", "+whole"]
    body = [
        [
            name, fmt(x["ttfc"].p50), fmt(paired_added(x["ttfc"], a["ttfc"])),
            fmt(x["ttfc"].p99), fmt(x["whole"].p50), fmt(paired_added(x["whole"], a["whole"])),
        ]
        for name, x in streamed.items()
    ]  # fmt: skip
    print(text_table(head, body))
    print(
        "SSE, one request at a time, 8 words back to back from the fake upstream; + = added over "
        "A (median of round differences); the mesh's first chunk waits for the second word "
        "(a word is released once complete)"
    )


def report(r: dict[str, PathResult], plan: Plan) -> None:
    a = r["A direct"]
    head = ["path", "p50 ms", "+p50 ms", "p99 ms", "+p99 ms", "rps c1", "rps c8", "rps c32"]
    head += ["cpu ms/req (c32)", "RSS idle/peak MB", "cache hits"]
    body = []
    for name, x in r.items():
        roles = [k.removeprefix("cpu_ms_") for k in x if k.startswith("cpu_ms_")]
        cpu = ", ".join(f"{role} {x[f'cpu_ms_{role}']:.2f}" for role in roles)
        mem = ", ".join(
            f"{role} {x[f'idle_mb_{role}']:.0f}/{x[f'peak_mb_{role}']:.0f}"
            for role in roles
            if role != "upstream"
        )
        body.append(
            [
                name, fmt(x["p50_ms"]), fmt(paired_added(x.latency, a.latency)), fmt(x["p99_ms"]),
                fmt(added(x["p99_ms"], a["p99_ms"])), fmt(x["rps_c1"], 0), fmt(x["rps_c8"], 0),
                fmt(x["rps_c32"], 0), cpu, mem or "-", hits_and_errors(x),
            ]
        )  # fmt: skip
    print(text_table(head, body))
    print(
        f"upstream (fake, aiohttp) RSS idle {a['idle_mb_upstream']:.0f} MB; + = added over A; "
        "B and M use a gRPC client, A, L and H an HTTP one; " + cpu_note(plan.throughput_requests)
    )


def main(argv: list[str] | None = None) -> int:
    args = suite_arguments(__doc__).parse_args(argv)
    print(versions())
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "mesh-bench-litellm-install.log"
    try:
        python = litellm_venv.ensure(log)
    except litellm_venv.Unavailable as exc:
        print(f"LiteLLM beside the mesh: SKIPPED: {exc}")
        write_rows([], args.rows)
        return 0
    print(f"litellm {litellm_venv.VERSION} from {python.parent.parent}")
    plan = Plan.from_args(args)
    results, streamed = run(plan, python)
    report(results, plan)
    stream_report(streamed)
    write_rows(rows(results) + stream_rows(streamed), args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The mesh processes the suites start, only through the CLI, and the router configs they use.

Each process gets its own data folder (MESH_DATA_DIR: ledger, audit log, span store) inside the
run's temporary folder, so SQLite files are neither shared between processes nor left in the
user's cache; the model cache (MESH_CACHE_DIR) is left alone so converted models are reused.

Router configs:
- "default": the shipped defaults, nothing but the upstreams (cheapest policy, the tier
  estimate static-first, semantic cache, guards, tracing at 100 %, metrics). Only the
  Prometheus port is made a free one (port 0) so several processes can run side by side.
- "lean": the minimum a router does: guards and tracing on, exact cache tier only, a
  features-only tier estimate (MiniLM never loads), no metrics endpoint; requests pin the model.
- "lean-untraced": lean with telemetry off, the baseline for the cost of tracing.
- "lean-unguarded": lean with no guards: what the guards' checks cost on a path.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import Ready, grpc_ready, loopback, server

FAKE_MODEL = "fake-model"  # served by FakeEngine, the deterministic test engine

_LEAN_ROUTING = "  routing: {estimator: {embeddings: false}}\n"
# kind -> (telemetry section, router.cache settings, the rest of the router section)
ROUTER_CONFIGS = {
    "default": ("telemetry: {prometheus_listen: '127.0.0.1:0'}\n", {}, ""),
    "lean": ("telemetry: {prometheus_listen: null}\n", {"semantic": "false"}, _LEAN_ROUTING),
    "lean-untraced": (
        "telemetry: {enabled: false, prometheus_listen: null}\n",
        {"semantic": "false"},
        _LEAN_ROUTING,
    ),
    "lean-unguarded": (
        "telemetry: {prometheus_listen: null}\n",
        {"semantic": "false"},
        _LEAN_ROUTING + "  guards: {enabled: false}\n",
    ),
}


def router_config(
    kind: str, upstreams: Sequence[tuple[str, str]], cache_entries: int | None = None
) -> str:
    """mesh.yaml text for a router of `kind` over (node id, address) upstreams; `cache_entries`
    bounds its response cache (the shipped bound otherwise)."""
    telemetry, cache, router_extra = ROUTER_CONFIGS[kind]
    cache = {**cache, **({"max_entries": str(cache_entries)} if cache_entries else {})}
    lines = "".join(f"  - {{id: {node_id}, address: '{addr}'}}\n" for node_id, addr in upstreams)
    if cache:
        router_extra = f"  cache: {{{', '.join(f'{k}: {v}' for k, v in cache.items())}}}\n" + (
            router_extra
        )
    return telemetry + "router:\n  upstreams:\n" + lines + router_extra


def mesh_command(*args: str) -> list[str]:
    """`mesh ...` with the interpreter running the benchmarks (its PYTHONPATH included)."""
    return [sys.executable, "-m", "mesh", *args]


@dataclass
class Fleet:
    """Processes of one suite: started in order, stopped in reverse on exit."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mesh-bench-")))
    pids: dict[str, int] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)

    def env(self, name: str, **extra: str) -> dict[str, str]:
        data = self.workdir / f"data-{name}"
        data.mkdir(exist_ok=True)
        env = {**os.environ, "MESH_DATA_DIR": str(data), "MESH_API_KEY": "", **extra}
        env.pop("MESH_REGISTRY_TOKEN", None)
        return env

    def start(self, name: str, args: Sequence[str], ready: Ready, **extra_env: str) -> int:
        """Start a server (`ready` from harness: grpc_ready/http_ready); returns its pid."""
        log = self.workdir / f"{name.replace(' ', '-')}.log"
        proc = self._stack.enter_context(
            server(args, ready, env=self.env(name.replace(" ", "-"), **extra_env), log=log)
        )
        self.pids[name] = proc.pid
        return proc.pid

    def node(
        self,
        name: str,
        address: str,
        node_id: str = "fake-node",
        *,
        model: str = FAKE_MODEL,
        tier: str = "frontier",
        price: float = 0.0,
    ) -> int:
        """`mesh node --engine fake`: FakeEngine, 8 one-word chunks per answer.

        Tier frontier by default: a lone node must be capable of every prompt (with tiers
        beside it, a smaller one would fail the harder prompts as no candidate).
        """
        args = mesh_command("node", "--engine", "fake", "--model", model, "--listen", address)
        args += ["--node-id", node_id, "--tier", tier, "--max-inflight", "256"]
        args += ["--price-in", str(price), "--price-out", str(2 * price)]
        args += ["--metrics-listen", "off"]
        return self.start(name, args, grpc_ready(address))

    def paced_node(self, name: str, address: str, pace_ms: float) -> int:
        """benchmarks.paced_node: FakeEngine waiting `pace_ms` between its 8 chunks."""
        args = [sys.executable, "-m", "benchmarks.paced_node", "--listen", address]
        args += ["--pace-ms", str(pace_ms)]
        return self.start(name, args, grpc_ready(address))

    def router(
        self,
        name: str,
        kind: str,
        address: str,
        upstreams: Sequence[tuple[str, str]],
        http_listen: str | None = None,
        cache_entries: int | None = None,
    ) -> int:
        """A `mesh router`; with `http_listen`, its OpenAI-compatible HTTP front too."""
        config = self.workdir / f"router-{name.replace(' ', '-')}.yaml"
        config.write_text(router_config(kind, upstreams, cache_entries))
        args = mesh_command("router", "--config", str(config), "--listen", address)
        if http_listen:
            args += ["--http-listen", http_listen]
        return self.start(name, args, grpc_ready(address))

    def relay(self, name: str, address: str, target: str) -> int:
        """The do-nothing grpc.aio relay (path N)."""
        args = [sys.executable, "-m", "benchmarks.relay", "--listen", address, "--target", target]
        return self.start(name, args, grpc_ready(address))

    def close(self) -> None:
        self._stack.close()


@contextmanager
def fleet() -> Iterator[Fleet]:
    """A Fleet stopped on exit, SIGTERM included (`benchmarks` sends it on a suite timeout).

    Its temporary folder (logs, data files) is removed after a clean run and kept after a
    failure, for the logs.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    running = Fleet()
    try:
        yield running
    except BaseException:
        running.close()
        print(f"logs kept in {running.workdir}", file=sys.stderr)
        raise
    running.close()
    shutil.rmtree(running.workdir, ignore_errors=True)


Started = dict[str, tuple[str, dict[str, int]]]  # path name -> (address, role -> pid)


def start_mesh_paths(
    f: Fleet, routers: dict[str, str], cache_entries: int | None = None
) -> Started:
    """A FakeEngine node (path D), the relay in front of it (N), and routers over it (R ...).

    `routers` maps path name -> router config kind; `cache_entries` bounds their response
    caches. Roles: "node", and "front" for the relay or router in front of it.
    """
    node = loopback()
    node_pid = f.node("node", node)
    relay = loopback()
    started: Started = {"D node": (node, {"node": node_pid})}
    started["N relay"] = (relay, {"front": f.relay("relay", relay, node), "node": node_pid})
    for name, kind in routers.items():
        addr = loopback()
        pid = f.router(name, kind, addr, [("fake-node", node)], cache_entries=cache_entries)
        started[name] = (addr, {"front": pid, "node": node_pid})
    return started


def start_tiered_router(f: Fleet, name: str, frontier_node: str, frontier_pid: int) -> Started:
    """A default-config router over three tiers: small and medium FakeEngine nodes (cheaper)
    beside the frontier node. With one tier a router makes no estimate (none could change the
    decision); with three it does, so this path carries the tier estimator's cost."""
    upstreams = [("fake-node", frontier_node)]
    for tier, price in (("small", 0.02), ("medium", 0.15)):
        addr = loopback()
        f.node(f"node {tier}", addr, f"fake-{tier}", model=f"fake-{tier}", tier=tier, price=price)
        upstreams.append((f"fake-{tier}", addr))
    addr = loopback()
    pid = f.router(name, "default", addr, upstreams)
    return {name: (addr, {"front": pid, "node": frontier_pid})}

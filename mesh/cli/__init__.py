"""The `mesh` command: run nodes, routers and the embedded mesh; talk to them.

Subcommands are listed here by import path with their one-line help and imported only when
they run or show their own help: `mesh --help` imports click and nothing of the mesh's
runtime. Every command runs inside one error boundary (`mesh.cli.errors`).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from mesh.cli.errors import error_boundary
from mesh.cli.lazy_group import LazyCommand, LazyGroup

# name -> where the command lives, and the first paragraph of its docstring (a unit test
# checks that the two agree).
COMMANDS = {
    "up": LazyCommand(
        "mesh.cli.serve:up",
        "Run the embedded mesh (router, nodes, bridges) in the foreground until Ctrl-C / SIGTERM.",
    ),
    "node": LazyCommand(
        "mesh.cli.node:node",
        "Serve one local model as an inference node, registered with a router if one is given.",
    ),
    "bridge": LazyCommand(
        "mesh.bridge_cli:bridge", "Serve an external model behind mesh.v1.InferenceService."
    ),
    "router": LazyCommand(
        "mesh.cli.serve:router", "Run the router front node over the upstream nodes in its config."
    ),
    "chat": LazyCommand(
        "mesh.cli.chat:chat", "Send one prompt through the mesh and print the answer and its route."
    ),
    "demo": LazyCommand(
        "mesh.cli.demo:demo",
        "A real mesh on this machine: three routed prompts, one streamed, then a clean stop.",
    ),
    "models": LazyCommand("mesh.cli.models:models", "Models the mesh can serve locally."),
    "nodes": LazyCommand(
        "mesh.router.cli:nodes_command",
        "The router's routing table: health, circuit breaker, load and models of every node.",
    ),
    "costs": LazyCommand(
        "mesh.router.cli:costs_command",
        "Spend, baseline, and savings from routing and from the cache, from the router's ledger.",
    ),
    "route-eval": LazyCommand(
        "mesh.router.cli:route_eval_command",
        "Route a labelled JSONL file and report cost vs always-frontier and mis-routing rates.",
    ),
    "cache-eval": LazyCommand(
        "mesh.router.cache_eval_cli:cache_eval_command",
        "Store each pair's first prompt, ask the second: report false and true cache hits.",
    ),
    "health": LazyCommand(
        "mesh.cli.health:health",
        "Check a server's health (grpc.health.v1): exit 0 when SERVING, for probes and scripts.",
    ),
    "certs": LazyCommand(
        "mesh.cli.certs:certs", "Certificates for TLS and mutual TLS between mesh processes."
    ),
    "keys": LazyCommand(
        "mesh.router.cli:keys_command", "API keys for mesh.yaml (stored only as SHA-256 hashes)."
    ),
    "policy": LazyCommand("guards.cli:policy", "Guard policies: lint, test, apply."),
    "audit": LazyCommand(
        "guards.cli:audit", "Print audited guard decisions, newest first (one JSON object a line)."
    ),
    "guard-eval": LazyCommand(
        "guards.cli:guard_eval",
        "Recall per attack category, false positives per benign source, PII recall/precision.",
    ),
    "trace": LazyCommand(
        "mesh.telemetry.cli:trace_command",
        "Show a trace as a span tree: TRACE_ID (or a prefix), --request ID or --last N.",
    ),
}


class MeshGroup(LazyGroup):
    """The root group: lazy subcommands, each run inside the one error boundary."""

    def invoke(self, ctx: click.Context) -> Any:
        with error_boundary():
            return super().invoke(ctx)


@click.group(cls=MeshGroup, lazy_commands=COMMANDS)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="inference-mesh")
def cli(verbose: bool) -> None:
    """Inference Mesh: one typed gRPC endpoint for every LLM, routed by cost, guarded by policy."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    """The `mesh` console script."""
    # numpy's OpenBLAS: one thread. Its work in a mesh process is small (the cache's vector
    # search, the tier model) and shares 2 cores with the event loop; with 2 threads the same
    # search took 0.3 or 20 ms from run to run, with 1 a steady 0.6 ms (measured here). Set
    # before anything imports numpy; torch and vLLM keep their own thread pools.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cli(prog_name="mesh")

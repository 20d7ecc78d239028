"""Router commands for operators: `mesh nodes`, `mesh costs`, `mesh route-eval`, `mesh keys`.

Heavy imports (grpc stubs, SQLAlchemy, the embedding model) happen inside the commands so the
rest of the CLI stays quick to start. Failures (a bad config, an unusable ledger, a refused
call) are reported by the `mesh` command's one error boundary (mesh.cli.errors).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from mesh.cli.options import (
    FieldDefault,
    client_tls_options,
    config_option,
    json_option,
    load_mesh_config,
    target_option,
)
from mesh.cli.since import since_option

if TYPE_CHECKING:
    from mesh.config import ClientTls, NodeConfig


def card_of(node: NodeConfig) -> Any:
    """The ModelCard a configured node will publish (context window as configured, or 8192)."""
    from mesh.demo_catalogue import node_card

    return node_card(node)


# -- mesh nodes ----------------------------------------------------------------------------
@click.command("nodes")
@target_option("--router")
@json_option("One JSON object per node.")
@client_tls_options
def nodes_command(target: str, as_json: bool, tls: ClientTls | None) -> None:
    """The router's routing table: health, circuit breaker, load and models of every node."""
    nodes = asyncio.run(_list_nodes(target, tls))
    if as_json:
        from google.protobuf.json_format import MessageToDict

        for node in nodes:
            click.echo(json.dumps(MessageToDict(node, preserving_proto_field_name=True)))
        return
    click.echo(format_nodes(nodes))


async def _list_nodes(target: str, tls: ClientTls | None = None) -> list[Any]:
    from mesh.client import open_channel
    from mesh.v1 import registry_pb2, registry_pb2_grpc

    out: list[Any] = []
    async with open_channel(target, tls) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        token = ""
        while True:
            page = await stub.ListNodes(
                registry_pb2.ListNodesRequest(page_size=200, page_token=token), timeout=10
            )
            out.extend(page.nodes)
            token = page.next_page_token
            if not token:
                return out


def format_nodes(nodes: list[Any]) -> str:
    """A fixed-width table an operator reads at a glance."""
    from mesh.v1 import registry_pb2

    if not nodes:
        return "no nodes in the routing table"
    header = ("node", "source", "health", "breaker", "running", "waiting", "kv", "ttft ms", "seen")
    rows = [header]
    now = time.time()
    for n in nodes:
        source = registry_pb2.NodeSource.Name(n.source).removeprefix("NODE_SOURCE_").lower()
        breaker = registry_pb2.BreakerState.Name(n.breaker_state).removeprefix("BREAKER_STATE_")
        seen = now - n.last_seen.ToNanoseconds() / 1e9 if n.last_seen.seconds else None
        rows.append(
            (
                n.node_id,
                source,
                "up" if n.healthy else "DOWN",
                breaker.lower().replace("_", "-"),
                str(n.load.running),
                str(n.load.waiting),
                f"{n.load.kv_cache_usage:.0%}",
                f"{n.load.ewma_ttft_ms:.0f}" if n.load.ewma_ttft_ms else "-",
                f"{seen:.0f}s ago" if seen is not None else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for n in nodes:
        models = ", ".join(
            f"{m.model_id} ({m.provider}, ${m.input_price_per_mtok:g}/${m.output_price_per_mtok:g}"
            " per M)"
            for m in n.models
        )
        lines.append(f"  {n.node_id}: {n.address} serves {models or 'nothing yet'}")
    return "\n".join(lines)


# -- mesh costs ----------------------------------------------------------------------------
@click.command("costs")
@config_option(help="mesh.yaml whose router.ledger to read. Default: ledger.db in the data dir.")
@since_option
@click.option("--by", type=click.Choice(["tenant", "model"]), default=None)
@json_option("One JSON list of the rows.")
def costs_command(
    config_path: str | None, since: dt.datetime | None, by: str | None, as_json: bool
) -> None:
    """Spend, baseline, and savings from routing and from the cache, from the router's ledger."""
    from mesh.router.ledger import format_costs

    config = load_mesh_config(config_path)
    rows = asyncio.run(_summary(config.router.ledger_url(), since, by))
    if as_json:
        click.echo(
            json.dumps(
                [{**r.__dict__, "savings_usd": r.savings_usd, "group": by or "total"} for r in rows]
            )
        )
        return
    click.echo(format_costs(rows, by))  # type: ignore[arg-type]


async def _summary(url: str, since: dt.datetime | None, by: str | None) -> list[Any]:
    from mesh.router.ledger import Ledger

    ledger = Ledger(url)
    try:
        await ledger.start()
        return await ledger.summary(since=since, by=by)  # type: ignore[arg-type]
    finally:
        await ledger.close()


# -- mesh route-eval ---------------------------------------------------------------------
def config_cards(config: Any, probe_upstreams: bool) -> tuple[list[Any], list[str]]:
    """Every node, bridge and upstream card the config gives, and notes on what was left out.

    A static upstream publishes its cards only when the router probes it (ListModels): without
    `probe_upstreams` it is left out, with it the upstream is asked once, here.
    """
    import grpc

    from mesh.demo_catalogue import bridge_card

    cards = [card_of(n) for n in config.nodes] + [bridge_card(b) for b in config.bridges]
    notes = []
    for upstream in config.router.upstreams:
        if not probe_upstreams:
            notes.append(
                f"upstream {upstream.id} ({upstream.address}): its cards come from a probe; "
                "left out (--probe-upstreams asks it)"
            )
            continue
        try:
            cards += asyncio.run(_probe_cards(upstream.address))
        except grpc.aio.AioRpcError as err:
            notes.append(
                f"upstream {upstream.id} ({upstream.address}): probe failed, {err.code().name}"
            )
    return cards, notes


async def _probe_cards(address: str) -> list[Any]:
    import grpc

    from mesh.v1 import inference_pb2, inference_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await stub.ListModels(inference_pb2.ListModelsRequest(), timeout=5.0)
    return list(reply.models)


@click.command("route-eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@config_option(
    help="Catalogue: this mesh.yaml's nodes, bridges and upstreams. "
    "Default: the demo's three tiers."
)
@click.option(
    "--max-tokens",
    type=int,
    default=FieldDefault("mesh.config:RoutingSettings", "default_max_tokens"),
    show_default=True,
    help="Completion length priced.",
)
@click.option("--no-embeddings", is_flag=True, help="The structure-only model (no MiniLM).")
@click.option(
    "--probe-upstreams", is_flag=True, help="Ask each static upstream for its cards (ListModels)."
)
@json_option("One JSON object: the report.")
def route_eval_command(
    file: str,
    config_path: str | None,
    max_tokens: int,
    no_embeddings: bool,
    probe_upstreams: bool,
    as_json: bool,
) -> None:
    """Route a labelled JSONL file and report cost vs always-frontier and mis-routing rates."""
    from mesh.config import EstimatorSettings
    from mesh.router.policies import PolicySet
    from mesh.router.route_eval import demo_cards, evaluate, load_labelled
    from mesh.router.tier_estimator import TierEstimator

    try:
        rows = load_labelled(file)
    except (ValueError, json.JSONDecodeError) as err:
        raise click.ClickException(str(err)) from None
    config = load_mesh_config(config_path)
    if config_path:
        cards, notes = config_cards(config, probe_upstreams)
        for note in notes:
            click.echo(note, err=True)
        if not cards:
            raise click.ClickException(f"{config_path} configures no model cards to route to")
        settings = config.router.routing
    else:
        cards = demo_cards()
        settings = config.router.routing
    estimator_settings = settings.estimator
    if no_embeddings:
        estimator_settings = EstimatorSettings(
            **{**estimator_settings.model_dump(), "embeddings": False}
        )
    from mesh.embeddings.batching import shared_embedder
    from mesh.embeddings.static import shared_static_embedder

    embeddings = config.router.embeddings
    estimator = TierEstimator(
        estimator_settings,
        embedder=shared_embedder(embeddings.precision),
        fast_embedder=shared_static_embedder("mean+max") if embeddings.static else None,
    )
    policy = PolicySet(settings).get(settings.default_policy)
    report = evaluate(rows, cards, estimator, policy, max_tokens=max_tokens)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(format_route_eval(report, cards))


def format_route_eval(report: dict[str, Any], cards: Sequence[Any]) -> str:
    """The human report: catalogue, headline rates, per labelled tier, confusion, traps."""
    from mesh.config import tier_name

    lines = [f"{report['n']} prompts, policy {report['policy']}, catalogue:"]
    for card in cards:
        lines.append(
            f"  {card.model_id:<28} {tier_name(card.tier):<9} "
            f"${card.input_price_per_mtok:g}/${card.output_price_per_mtok:g} per M"
        )
    lines.append(f"cost vs always-frontier   {report['cost_ratio']:.3f}")
    lines.append(f"under-routing rate        {report['under_routing_rate']:.3f}")
    lines.append(f"over-routing rate         {report['over_routing_rate']:.3f}")
    shares = ", ".join(f"{k} {v:.0%}" for k, v in report["tier_share"].items())
    lines.append(f"tier share                {shares}")
    deciders = ", ".join(f"{k} {v:.0%}" for k, v in report.get("decided_by", {}).items())
    if deciders:
        lines.append(f"decided by                {deciders}")
    lines.append("labelled   n     sent lower  sent higher  sent to")
    for label, t in report["by_tier"].items():
        sent = ", ".join(f"{k} {v}" for k, v in t["sent"].items())
        lines.append(
            f"  {label:<8} {t['n']:<5} {t['under']:>3} {t['under_rate']:>6.1%}  "
            f"{t['over']:>3} {t['over_rate']:>6.1%}   {sent}"
        )
    for name, table in (("trap", report.get("by_trap", {})), ("kind", report["by_kind"])):
        if not table:
            continue
        lines.append(f"by {name}:")
        for key, c in table.items():
            lines.append(
                f"  {key:<24} n={c['n']:<4} correct={c['correct']:<4} "
                f"under={c['under']:<4} over={c['over']}"
            )
    return "\n".join(lines)


# -- mesh keys -----------------------------------------------------------------------------
@click.group("keys")
def keys_command() -> None:
    """API keys for mesh.yaml (stored only as SHA-256 hashes)."""


@keys_command.command("hash")
def keys_hash() -> None:
    """Print the SHA-256 of a key read from stdin (never from argv, which `ps` shows)."""
    from mesh.router.auth import hash_api_key

    if sys.stdin.isatty():
        key = click.prompt("API key", hide_input=True)
    else:
        key = sys.stdin.readline().strip()
    if not key:
        raise click.ClickException("no key given on stdin")
    click.echo(hash_api_key(key))


COMMANDS = (nodes_command, costs_command, route_eval_command, keys_command)

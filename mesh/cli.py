"""The `mesh` command: run nodes, routers and the embedded mesh; talk to them."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import grpc
import grpc.aio
from google.protobuf import json_format

from mesh.config import (
    DEFAULT_ROUTER_LISTEN,
    ConfigError,
    MeshConfig,
    MissingApiKey,
    NodeConfig,
    TelemetrySettings,
    Tier,
    VllmEngineConfig,
    default_config,
    default_engine,
    field_default,
    load_config,
)
from mesh.contract.errors import MeshError
from mesh.contract.node_token import TokenUnavailable
from mesh.contract.status import error_details
from mesh.metrics_flag import describe_metrics, metrics_listen_option, telemetry_settings
from mesh.serve_loop import serve_until_signal

DEFAULT_TARGET = DEFAULT_ROUTER_LISTEN


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _server_telemetry(
    service: str, config: MeshConfig | None = None, settings: TelemetrySettings | None = None
) -> Any:
    """Telemetry and JSON logs (with trace ids) for a long-running server process.

    `settings` (from flags) wins over the config's telemetry section.
    """
    from mesh.telemetry import configure_logging, setup_telemetry

    if settings is None:
        settings = config.telemetry if config else TelemetrySettings.model_validate({})
    if os.environ.get("MESH_LOG_FORMAT", "json") == "json":
        configure_logging(logging.getLogger().level, json=True, service_name=service)
    return setup_telemetry(service, settings)


def _load(config_path: str | None) -> MeshConfig:
    if config_path is None:
        return default_config()
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="inference-mesh")
def cli(verbose: bool) -> None:
    """Inference Mesh: one typed gRPC endpoint for every LLM, routed by cost, guarded by policy."""
    _setup_logging(verbose)


# --- servers ------------------------------------------------------------------------------
@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="mesh.yaml")
@click.option("--listen", help=f"Router address (default from config, {DEFAULT_ROUTER_LISTEN}).")
@click.option(
    "--grace", default=5.0, show_default=True, help="Seconds in-flight requests get on stop."
)
def up(config_path: str | None, listen: str | None, grace: float) -> None:
    """Run the embedded mesh (router, nodes, bridges) in the foreground until Ctrl-C / SIGTERM."""
    from mesh.embedded import BridgeSetupError, EmbeddedMesh

    config = _load(config_path)
    try:
        mesh = EmbeddedMesh(config, listen=listen, telemetry=_server_telemetry("mesh", config))
        # Before any engine loads: a missing bridge key fails in a second, not after a minute.
        mesh.check_bridge_keys()
        asyncio.run(
            serve_until_signal(
                mesh.start,
                mesh.stop,
                grace_s=grace,
                on_ready=lambda addr: click.echo(f"mesh ready: router on {addr}", err=True),
            )
        )
    except MeshError as exc:  # e.g. an unusable ledger or audit database: the message says which
        raise click.ClickException(exc.message) from None
    except (MissingApiKey, TokenUnavailable, BridgeSetupError) as exc:
        # Each names the bridge and the variable, file or price at fault, never a key value.
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option(
    "--engine",
    type=click.Choice(["vllm", "transformers", "fake"]),
    default=None,
    help="Default: $MESH_ENGINE if set, else vllm where it is installed, else transformers. "
    "fake is for tests only.",
)
@click.option("--model", default=field_default(NodeConfig, "model"), show_default=True)
@click.option("--listen", default="127.0.0.1:50061", show_default=True)
@click.option("--node-id", default=None, help="Default: local-<model>.")
@click.option(
    "--tier",
    type=click.Choice([t.value for t in Tier]),
    default=field_default(NodeConfig, "tier").value,
    show_default=True,
)
@click.option(
    "--price-in",
    default=field_default(NodeConfig, "input_price_per_mtok"),
    show_default=True,
    help="USD per 1M prompt tokens.",
)
@click.option(
    "--price-out",
    default=field_default(NodeConfig, "output_price_per_mtok"),
    show_default=True,
    help="USD per 1M completion tokens.",
)
@click.option(
    "--max-inflight", default=field_default(NodeConfig, "max_inflight"), show_default=True
)
@click.option(
    "--grace", default=10.0, show_default=True, help="Seconds in-flight requests get on stop."
)
@click.option(
    "--router", "router_address", metavar="ADDR", default=None, help="Router to Register with."
)
@click.option(
    "--advertise",
    metavar="ADDR",
    default=None,
    help="Address the router dials. Default: the bound address.",
)
@click.option(
    "--heartbeat-interval",
    default=field_default(NodeConfig, "heartbeat_interval_s"),
    show_default=True,
    help="Seconds between load reports, until the router states its own.",
)
@click.option(
    "--router-token-env",
    metavar="VAR",
    default=None,
    help="Variable holding the router's registration token. Default: MESH_REGISTRY_TOKEN, "
    "sent only when set.",
)
@click.option(
    "--router-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the router's registration token.",
)
@metrics_listen_option
@click.option("--max-model-len", type=int, default=None, help="vLLM: context length reserved.")
@click.option("--kv-cache-gib", type=float, default=None, help="vLLM: KV cache size on CPU.")
@click.option("--max-num-seqs", type=int, default=None, help="vLLM: sequences batched together.")
@click.option(
    "--dtype",
    type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
    default=None,
    help="vLLM: weights dtype; auto is float32 on CPU.",
)
def node(
    engine: str | None,
    model: str,
    listen: str,
    node_id: str | None,
    tier: str,
    price_in: float,
    price_out: float,
    max_inflight: int,
    grace: float,
    router_address: str | None,
    advertise: str | None,
    heartbeat_interval: float,
    router_token_env: str | None,
    router_token_file: Path | None,
    metrics_listen: str | None,
    max_model_len: int | None,
    kv_cache_gib: float | None,
    max_num_seqs: int | None,
    dtype: str | None,
) -> None:
    """Serve one local model as an inference node, registered with a router if one is given."""
    from pydantic import ValidationError

    from nodes.runtime import NodeRuntime

    # Unset token flags stay unset: NodeConfig then tries its default variable, optionally.
    token_flags = {"router_token_env": router_token_env, "router_token_file": router_token_file}
    vllm_flags = {
        "max_model_len": max_model_len,
        "kv_cache_gib": kv_cache_gib,
        "max_num_seqs": max_num_seqs,
        "dtype": dtype,
    }
    try:
        config = NodeConfig(
            id=node_id or f"local-{model}",
            engine=engine or default_engine(),  # type: ignore[arg-type]
            model=model,
            listen=listen,
            tier=Tier(tier),
            input_price_per_mtok=price_in,
            output_price_per_mtok=price_out,
            max_inflight=max_inflight,
            router_address=router_address,
            advertise_address=advertise,
            heartbeat_interval_s=heartbeat_interval,
            **{k: v for k, v in token_flags.items() if v is not None},
            # Unset flags keep VllmEngineConfig's defaults.
            vllm=VllmEngineConfig.model_validate(
                {k: v for k, v in vllm_flags.items() if v is not None}
            ),
        )
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    telemetry = _server_telemetry(
        f"mesh-node-{config.id}", settings=telemetry_settings(metrics_listen)
    )
    runtime = NodeRuntime(config, telemetry=telemetry)

    def ready(address: str) -> None:
        click.echo(f"node {config.id} ready on {address} ({describe_metrics(telemetry)})", err=True)

    try:
        asyncio.run(serve_until_signal(runtime.start, runtime.stop, grace_s=grace, on_ready=ready))
    except TokenUnavailable as exc:  # read before the engine starts; names the source only
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--listen", help="Override router.listen.")
@click.option("--grace", default=5.0, show_default=True)
def router(config_path: str, listen: str | None, grace: float) -> None:
    """Run the router front node over the upstream nodes in its config."""
    from mesh.router.app import RouterRuntime

    config = _load(config_path)
    try:
        runtime = RouterRuntime(config.router, telemetry=_server_telemetry("mesh-router", config))
        asyncio.run(
            serve_until_signal(
                lambda: runtime.start(listen),
                runtime.stop,
                grace_s=grace,
                on_ready=lambda addr: click.echo(f"router ready on {addr}", err=True),
            )
        )
    except TokenUnavailable as exc:  # router.registry names a token source that yields none
        raise click.ClickException(str(exc)) from None
    except MeshError as exc:  # e.g. an unusable ledger or audit database: the message says which
        raise click.ClickException(exc.message) from None


# --- models -------------------------------------------------------------------------------
@cli.group()
def models() -> None:
    """Models the mesh can serve locally."""


@models.command("list")
def models_list() -> None:
    """Known local models and whether they are converted yet."""
    from nodes.assets import KNOWN_MODELS, cache_dir, is_converted

    for name, model in sorted(KNOWN_MODELS.items()):
        state = "ready" if is_converted(name) else "not converted"
        click.echo(f"{name:28} {state:14} ctx={model.context_window:<6} {model.description}")
    click.echo(f"cache: {cache_dir()}")


@models.command("path")
@click.argument("name")
def models_path(name: str) -> None:
    """Print the local folder of a model, converting it first (with progress) if needed."""
    from nodes.assets import UnknownModel, model_path

    try:
        click.echo(str(model_path(name)))
    except UnknownModel as exc:
        raise click.ClickException(str(exc.args[0])) from None
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None


# --- client -------------------------------------------------------------------------------
def _fail_rpc(err: grpc.aio.AioRpcError) -> None:
    details = error_details(err)
    line = f"error: {details.code}"
    if details.reason:
        line += f" ({details.reason})"
    click.echo(f"{line}: {details.message}", err=True)
    for violation in details.violations:
        click.echo(f"  {violation.field}: {violation.description}", err=True)
    for key, value in sorted(details.metadata.items()):
        click.echo(f"  {key}={value}", err=True)
    if details.retry_after_s is not None:
        click.echo(f"  retry after {details.retry_after_s:.1f}s", err=True)
    sys.exit(2)


@cli.command()
@click.argument("prompt")
@click.option("--target", default=DEFAULT_TARGET, show_default=True, help="Router or node address.")
@click.option(
    "--model", default="auto", show_default=True, help="'auto' or a model id/alias to pin."
)
@click.option("--stream", is_flag=True, help="Print tokens as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="Print the response message as JSON.")
@click.option("--max-tokens", type=int, default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--system", default=None, help="A system prompt.")
@click.option("--timeout", default=120.0, show_default=True, help="Deadline in seconds.")
@click.option("--api-key", default=None, help="Default: $MESH_API_KEY.")
def chat(
    prompt: str,
    target: str,
    model: str,
    stream: bool,
    as_json: bool,
    max_tokens: int | None,
    temperature: float | None,
    system: str | None,
    timeout: float,
    api_key: str | None,
) -> None:
    """Send one prompt through the mesh and print the answer and its route."""
    from mesh.client import ChatOptions

    options = ChatOptions(
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        system=system,
        timeout_s=timeout,
        api_key=api_key or os.environ.get("MESH_API_KEY") or None,
    )
    try:
        asyncio.run(_chat(target, prompt, options, stream=stream, as_json=as_json))
    except grpc.aio.AioRpcError as err:
        _fail_rpc(err)


async def _chat(target: str, prompt: str, options: Any, *, stream: bool, as_json: bool) -> None:
    from mesh.client import (
        describe_route,
        describe_verdicts,
        generate,
        generate_stream,
        open_channel,
    )

    async with open_channel(target) as channel:
        if not stream:
            reply = await generate(channel, prompt, options)
            if as_json:
                click.echo(json_format.MessageToJson(reply, indent=2))
                return
            click.echo(reply.text)
            for line in describe_route(reply.route, reply.usage) + describe_verdicts(
                reply.guard_verdicts
            ):
                click.echo(line, err=True)
            return
        async for event in generate_stream(channel, prompt, options):
            if as_json:
                click.echo(json_format.MessageToJson(event, indent=None))
            elif event.HasField("delta"):
                click.echo(event.delta.text, nl=False)
                sys.stdout.flush()
            else:
                click.echo()
                summary = event.summary
                for line in describe_route(summary.route, summary.usage) + describe_verdicts(
                    summary.guard_verdicts
                ):
                    click.echo(line, err=True)


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="mesh.yaml")
def demo(config_path: str | None) -> None:
    """A real mesh on this machine: three routed prompts, one streamed, then a clean stop."""
    from mesh.demo import run_demo

    sys.exit(asyncio.run(run_demo(_load(config_path))))


def _register_plugins() -> None:
    """Commands owned by other packages: guard policy tooling and the trace viewer."""
    from guards.cli import audit, guard_eval, policy
    from mesh.router.cli import COMMANDS as ROUTER_COMMANDS
    from mesh.telemetry.cli import trace_command

    for command in (policy, audit, guard_eval, trace_command, *ROUTER_COMMANDS):
        cli.add_command(command)


_register_plugins()

from mesh.bridge_cli import bridge  # noqa: E402 (registered after the group exists)

cli.add_command(bridge)


def main() -> None:
    cli(prog_name="mesh")


if __name__ == "__main__":
    main()

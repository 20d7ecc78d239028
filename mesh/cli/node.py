"""`mesh node`: serve one local model as an inference node."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click

from mesh.cli.options import (
    NODE_GRACE_S,
    FieldDefault,
    client_tls_fields,
    config_from_flags,
    grace_option,
    listen_option,
    metrics_listen_option,
    node_id_option,
    price_options,
    registration_options,
    router_tls_options,
    server_tls_fields,
    server_tls_options,
    tier_option,
)
from mesh.cli.server_telemetry import describe_metrics, flag_settings, server_telemetry
from mesh.config import NodeConfig, VllmEngineConfig, default_engine
from mesh.serve_loop import run_server, serve_until_signal

NODE = "mesh.config:NodeConfig"
# A fixed port, unlike NodeConfig's 0: the address printed in docs and dialled by examples.
DEFAULT_NODE_LISTEN = "127.0.0.1:50061"


@click.command()
@click.option(
    "--engine",
    type=click.Choice(["vllm", "transformers", "fake"]),
    default=None,
    help="Default: $MESH_ENGINE, else vllm where it is installed, else transformers. "
    "fake is for tests only.",
)
@click.option("--model", type=str, default=FieldDefault(NODE, "model"), show_default=True)
@listen_option(default=DEFAULT_NODE_LISTEN, help="Address the node serves on.")
@node_id_option("local-<model>")
@tier_option(default=FieldDefault(NODE, "tier"))
@price_options(
    input_default=FieldDefault(NODE, "input_price_per_mtok"),
    output_default=FieldDefault(NODE, "output_price_per_mtok"),
)
@click.option(
    "--max-inflight",
    type=int,
    default=FieldDefault(NODE, "max_inflight"),
    show_default=True,
    help="Requests admitted at once; above it RESOURCE_EXHAUSTED.",
)
@grace_option(NODE_GRACE_S)
@registration_options
@server_tls_options
@router_tls_options
@metrics_listen_option
@click.option("--max-model-len", type=int, default=None, help="vLLM: context length reserved.")
@click.option("--kv-cache-gib", type=float, default=None, help="vLLM: KV cache size on CPU.")
@click.option("--max-num-seqs", type=int, default=None, help="vLLM: sequences batched together.")
@click.option(
    "--dtype",
    type=click.Choice(get_args(VllmEngineConfig.model_fields["dtype"].annotation)),
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
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    insecure: bool,
    router_tls_ca: Path | None,
    router_tls_cert: Path | None,
    router_tls_key: Path | None,
    router_tls_server_name: str | None,
    metrics_listen: str | None,
    max_model_len: int | None,
    kv_cache_gib: float | None,
    max_num_seqs: int | None,
    dtype: str | None,
) -> None:
    """Serve one local model as an inference node, registered with a router if one is given."""
    from nodes.runtime import NodeRuntime

    # Unset flags stay unset: the config then applies its own defaults (and, for the token,
    # tries its default variable only optionally).
    optional = {
        "router_token_env": router_token_env,
        "router_token_file": router_token_file,
    }
    vllm_flags = {
        "max_model_len": max_model_len,
        "kv_cache_gib": kv_cache_gib,
        "max_num_seqs": max_num_seqs,
        "dtype": dtype,
    }
    config = config_from_flags(
        NodeConfig,
        {
            "id": node_id or f"local-{model}",
            "engine": engine or default_engine(),
            "model": model,
            "listen": listen,
            "tier": tier,
            "input_price_per_mtok": price_in,
            "output_price_per_mtok": price_out,
            "max_inflight": max_inflight,
            "router_address": router_address,
            "advertise_address": advertise,
            "heartbeat_interval_s": heartbeat_interval,
            "tls": server_tls_fields(tls_cert, tls_key, tls_client_ca),
            "router_tls": client_tls_fields(
                router_tls_ca, router_tls_cert, router_tls_key, router_tls_server_name
            ),
            "insecure": insecure,
            **{k: v for k, v in optional.items() if v is not None},
            "vllm": config_from_flags(
                VllmEngineConfig, {k: v for k, v in vllm_flags.items() if v is not None}
            ),
        },
    )
    telemetry = server_telemetry(f"mesh-node-{config.id}", flag_settings(metrics_listen))
    runtime = NodeRuntime(config, telemetry=telemetry)

    def ready(address: str) -> None:
        click.echo(f"node {config.id} ready on {address} ({describe_metrics(telemetry)})", err=True)

    run_server(serve_until_signal(runtime.start, runtime.stop, grace_s=grace, on_ready=ready))

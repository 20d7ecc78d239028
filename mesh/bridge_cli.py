"""`mesh bridge`: serve one external model (OpenAI, Anthropic, OpenAI-compatible) as a node.

The key is read from an environment variable or a file when the bridge starts, never from
the command line (shell history, `ps`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from mesh.config import ConfigError
from mesh.config.bridges import PROVIDERS, BridgeConfig
from mesh.serve_loop import run_server, serve_until_signal

# A fixed port beside `mesh node`'s, unlike BridgeConfig's 0: the address examples dial.
DEFAULT_BRIDGE_LISTEN = "127.0.0.1:50071"


@click.command("bridge")
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    required=True,
)
@click.option("--model", required=True, help="The provider's model name.")
@click.option("--base-url", default=None, help="API root. Default: the provider's public one.")
@click.option("--api-key-env", default=None, metavar="VAR", help="Variable holding the key.")
@click.option(
    "--api-key-file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the key.",
)
@listen_option(default=DEFAULT_BRIDGE_LISTEN, help="Address the bridge serves on.")
@node_id_option("bridge-<provider>-<model>")
@registration_options
@server_tls_options
@router_tls_options
@metrics_listen_option
@tier_option(default=None, help="Default: the price table's, else medium.")
@click.option("--context-window", type=int, default=None)
@click.option("--alias", "aliases", multiple=True, help="Another name to pin the model by.")
@click.option("--prices", "price_table", default=None, type=click.Path(path_type=Path),
              help="A price table replacing the shipped one.")  # fmt: skip
@price_options(input_default=None, output_default=None)
@click.option("--price-cached", type=float, default=None, help="USD per 1M cached tokens.")
@click.option(
    "--max-concurrent",
    type=int,
    default=FieldDefault("mesh.config.bridges:BridgeLimits", "max_concurrent"),
    show_default=True,
    help="Requests in flight to the provider.",
)
@click.option("--rpm", type=int, default=None, help="Requests per minute.")
@click.option("--tpm", type=int, default=None, help="Tokens per minute.")
@click.option(
    "--max-attempts",
    type=int,
    default=FieldDefault("mesh.config.bridges:RetryPolicy", "max_attempts"),
    show_default=True,
    help="Attempts in all on 429 / 5xx / connection errors, before any output.",
)
@grace_option(NODE_GRACE_S)
def bridge(**options: Any) -> None:
    """Serve an external model behind mesh.v1.InferenceService."""
    from nodes.bridges.runtime import BridgeRuntime

    config = config_from_flags(BridgeConfig, _config_fields(options))
    telemetry = server_telemetry(
        f"mesh-bridge-{config.id}", flag_settings(options["metrics_listen"])
    )
    try:
        runtime = BridgeRuntime(config, telemetry=telemetry)
    except ValueError as exc:  # no price for the model, or an unusable price table
        raise ConfigError(f"bridge {config.id}: {exc}") from None

    def ready(address: str) -> None:
        click.echo(
            f"bridge {config.id} ready on {address}: {config.provider} {config.model} at "
            f"{config.resolved_base_url} (key from {config.key_source}; "
            f"{describe_metrics(telemetry)})",
            err=True,
        )

    run_server(
        serve_until_signal(runtime.start, runtime.stop, grace_s=options["grace"], on_ready=ready)
    )


def _config_fields(options: dict[str, Any]) -> dict[str, Any]:
    """BridgeConfig fields from the command line; unset flags keep the config's defaults."""
    provider, model = options["provider"], options["model"]
    fields: dict[str, Any] = {
        "id": options["node_id"] or f"bridge-{provider}-{model}".replace("/", "-"),
        "provider": provider,
        "model": model,
        "listen": options["listen"],
        "heartbeat_interval_s": options["heartbeat_interval"],
        "aliases": list(options["aliases"]),
        "limits": {
            "max_concurrent": options["max_concurrent"],
            "requests_per_minute": options["rpm"],
            "tokens_per_minute": options["tpm"],
        },
        "retry": {"max_attempts": options["max_attempts"]},
        "tls": server_tls_fields(options["tls_cert"], options["tls_key"], options["tls_client_ca"]),
        "router_tls": client_tls_fields(
            options["router_tls_ca"],
            options["router_tls_cert"],
            options["router_tls_key"],
            options["router_tls_server_name"],
        ),
        "insecure": options["insecure"],
    }
    for flag, field in (
        ("base_url", "base_url"),
        ("api_key_env", "api_key_env"),
        ("api_key_file", "api_key_file"),
        ("router_address", "router_address"),
        ("advertise", "advertise_address"),
        ("router_token_env", "router_token_env"),
        ("router_token_file", "router_token_file"),
        ("tier", "tier"),
        ("context_window", "context_window"),
        ("price_table", "price_table"),
    ):
        if options[flag] is not None:
            fields[field] = options[flag]
    if options["price_in"] is not None or options["price_out"] is not None:
        if options["price_in"] is None or options["price_out"] is None:
            raise click.UsageError("--price-in and --price-out go together")
        fields["price"] = {
            "input": options["price_in"],
            "output": options["price_out"],
            "cached_input": options["price_cached"],
        }
    return fields

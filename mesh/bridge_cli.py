"""`mesh bridge`: serve one external model (OpenAI, Anthropic, OpenAI-compatible) as a node.

The key is read from an environment variable or a file when the bridge starts, never from
the command line (shell history, `ps`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from mesh.config import (
    BridgeConfig,
    BridgeLimits,
    RetryPolicy,
    Tier,
    describe_errors,
    field_default,
)
from mesh.metrics_flag import describe_metrics, metrics_listen_option, telemetry_settings
from mesh.serve_loop import serve_until_signal

DEFAULT_BRIDGE_LISTEN = "127.0.0.1:50071"


def _telemetry(service: str, metrics_listen: str | None) -> Any:
    """Telemetry and JSON logs for a long-running server, as every `mesh` server has."""
    from mesh.telemetry import configure_logging, setup_telemetry

    if os.environ.get("MESH_LOG_FORMAT", "json") == "json":
        configure_logging(logging.getLogger().level, json=True, service_name=service)
    return setup_telemetry(service, telemetry_settings(metrics_listen))


@click.command("bridge")
@click.option(
    "--provider",
    type=click.Choice(["openai", "anthropic", "openai-compatible"]),
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
@click.option("--listen", default=DEFAULT_BRIDGE_LISTEN, show_default=True)
@click.option("--node-id", default=None, help="Default: bridge-<provider>-<model>.")
@click.option("--router", "router_address", default=None, metavar="ADDR", help="Register here.")
@click.option("--advertise", default=None, metavar="ADDR", help="Address the router dials.")
@click.option(
    "--router-token-env",
    default=None,
    metavar="VAR",
    help="Variable holding the router's registration token (default MESH_REGISTRY_TOKEN).",
)
@click.option(
    "--router-token-file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the router's registration token.",
)
@metrics_listen_option
@click.option("--tier", type=click.Choice([t.value for t in Tier]), default=None)
@click.option("--context-window", type=int, default=None)
@click.option("--alias", "aliases", multiple=True, help="Another name to pin the model by.")
@click.option("--prices", "price_table", default=None, type=click.Path(path_type=Path),
              help="A price table replacing the shipped one.")  # fmt: skip
@click.option("--price-in", type=float, default=None, help="USD per 1M prompt tokens.")
@click.option("--price-out", type=float, default=None, help="USD per 1M completion tokens.")
@click.option("--price-cached", type=float, default=None, help="USD per 1M cached tokens.")
@click.option(
    "--max-concurrent",
    type=int,
    default=field_default(BridgeLimits, "max_concurrent"),
    show_default=True,
)
@click.option("--rpm", type=int, default=None, help="Requests per minute.")
@click.option("--tpm", type=int, default=None, help="Tokens per minute.")
@click.option(
    "--max-attempts",
    type=int,
    default=field_default(RetryPolicy, "max_attempts"),
    show_default=True,
)
@click.option("--grace", default=10.0, show_default=True, help="Seconds in-flight requests get.")
def bridge(**options: Any) -> None:
    """Serve an external model behind mesh.v1.InferenceService."""
    from nodes.bridges.prices import PriceTableError
    from nodes.bridges.runtime import BridgeRuntime

    try:
        config = BridgeConfig.model_validate(_config_fields(options))
        telemetry = _telemetry(f"mesh-bridge-{config.id}", options["metrics_listen"])
        runtime = BridgeRuntime(config, telemetry=telemetry)
    except ValidationError as exc:
        raise click.ClickException(describe_errors(exc)) from None
    except (PriceTableError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None

    def ready(address: str) -> None:
        click.echo(
            f"bridge {config.id} ready on {address}: {config.provider} {config.model} at "
            f"{config.resolved_base_url} (key from {config.key_source}; "
            f"{describe_metrics(telemetry)})",
            err=True,
        )

    try:
        asyncio.run(
            serve_until_signal(
                runtime.start, runtime.stop, grace_s=options["grace"], on_ready=ready
            )
        )
    except ValueError as exc:  # a missing API key or registration token, found at start
        raise click.ClickException(str(exc)) from None


def _config_fields(options: dict[str, Any]) -> dict[str, Any]:
    """BridgeConfig fields from the command line; unset flags keep the config's defaults."""
    provider, model = options["provider"], options["model"]
    fields: dict[str, Any] = {
        "id": options["node_id"] or f"bridge-{provider}-{model}".replace("/", "-"),
        "provider": provider,
        "model": model,
        "listen": options["listen"],
        "aliases": list(options["aliases"]),
        "limits": {
            "max_concurrent": options["max_concurrent"],
            "requests_per_minute": options["rpm"],
            "tokens_per_minute": options["tpm"],
        },
        "retry": {"max_attempts": options["max_attempts"]},
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

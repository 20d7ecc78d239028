"""Shared flags: one definition each, defaults read from the config models, same flags as before."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mesh.cli import cli
from mesh.cli.options import FieldDefault
from mesh.client import ChatOptions
from mesh.config import BridgeLimits, NodeConfig, RetryPolicy, RouterConfig, TelemetrySettings


def _command(*path: str) -> click.Command:
    command: click.Command | None = cli
    ctx = click.Context(cli)
    for name in path:
        assert isinstance(command, click.Group)
        command = command.get_command(ctx, name)
    assert command is not None
    return command


def _flags(*path: str) -> set[str]:
    return {opt for p in _command(*path).params if isinstance(p, click.Option) for opt in p.opts}


def _defaults(path: tuple[str, ...], *required: str) -> dict[str, object]:
    """What the command receives for every flag left unset (None dropped)."""
    ctx = _command(*path).make_context(path[-1], list(required))
    return {name: value for name, value in ctx.params.items() if value is not None}


REGISTRATION = {
    "--router",
    "--advertise",
    "--heartbeat-interval",
    "--router-token-env",
    "--router-token-file",
}

# TLS: a node's or bridge's own server and its channel to the router; a client's channel.
SERVER_TLS = {"--tls-cert", "--tls-key", "--tls-client-ca", "--insecure"}
ROUTER_TLS = {"--router-tls-ca", "--router-tls-cert", "--router-tls-key"}
ROUTER_TLS |= {"--router-tls-server-name"}
CLIENT_TLS = {"--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name"}

# The flags each command had before the shared decorators (bridge gained --heartbeat-interval,
# a BridgeConfig field it could not set before; up and router --http-listen, the HTTP front;
# node, bridge and the client commands their TLS flags).
FLAGS = {
    ("up",): {"--config", "--listen", "--http-listen", "--grace"},
    ("router",): {"--config", "--listen", "--http-listen", "--grace"},
    ("node",): REGISTRATION
    | SERVER_TLS
    | ROUTER_TLS
    | {"--engine", "--model", "--listen", "--node-id", "--tier", "--price-in", "--price-out"}
    | {"--max-inflight", "--grace", "--metrics-listen", "--max-model-len", "--kv-cache-gib"}
    | {"--max-num-seqs", "--dtype"},
    ("bridge",): REGISTRATION
    | SERVER_TLS
    | ROUTER_TLS
    | {"--provider", "--model", "--base-url", "--api-key-env", "--api-key-file", "--listen"}
    | {"--node-id", "--metrics-listen", "--tier", "--context-window", "--alias", "--prices"}
    | {"--price-in", "--price-out", "--price-cached", "--max-concurrent", "--rpm", "--tpm"}
    | {"--max-attempts", "--grace"},
    ("chat",): {"--target", "--model", "--stream", "--json", "--max-tokens", "--temperature"}
    | {"--system", "--timeout", "--api-key"}
    | CLIENT_TLS,
    ("nodes",): {"--router", "--json"} | CLIENT_TLS,
    ("costs",): {"--config", "--since", "--by", "--json"},
    ("route-eval",): {"--config", "--max-tokens", "--no-embeddings", "--probe-upstreams", "--json"},
    ("audit",): {"--db", "--since", "--guard", "--tenant", "--limit", "--page-token"}
    | {"--policy-changes"},
    ("policy", "apply"): {"--address", "--admin-key", "--api-key", "--dry-run"} | CLIENT_TLS,
    ("policy", "lint"): {"--config"},
    ("policy", "test"): {"--config"},
    ("certs", "dev"): {"--router-dns", "--node-dns", "--ip", "--days", "--trust-domain"}
    | {"--new-ca"},
    ("guard-eval",): {"--policy", "--split", "--json"},
    ("trace",): {"--request", "--last", "--json", "--store"},
    ("demo",): {"--config"},
}


@pytest.mark.parametrize("path", sorted(FLAGS))
def test_each_command_keeps_its_flags(path: tuple[str, ...]) -> None:
    assert _flags(*path) == FLAGS[path]


def test_server_defaults_are_the_config_models_defaults() -> None:
    node = NodeConfig.model_fields
    assert _defaults(("node",)) | {"listen": None} == {
        "model": node["model"].default,
        "listen": None,  # the CLI's fixed port, not NodeConfig's 0
        "tier": node["tier"].default.value,
        "price_in": node["input_price_per_mtok"].default,
        "price_out": node["output_price_per_mtok"].default,
        "max_inflight": node["max_inflight"].default,
        "grace": 10.0,
        "heartbeat_interval": node["heartbeat_interval_s"].default,
        "metrics_listen": TelemetrySettings.model_fields["prometheus_listen"].default,
        "insecure": NodeConfig.model_fields["insecure"].default,
    }
    bridge = _defaults(("bridge",), "--provider", "openai", "--model", "m")
    assert bridge["max_concurrent"] == BridgeLimits.model_fields["max_concurrent"].default
    assert bridge["max_attempts"] == RetryPolicy.model_fields["max_attempts"].default
    assert bridge["heartbeat_interval"] == node["heartbeat_interval_s"].default


def test_client_defaults_are_the_router_address_and_chat_options() -> None:
    router = RouterConfig.model_fields["listen"].default
    chat = _defaults(("chat",), "hello")
    assert (chat["target"], chat["model"], chat["timeout"]) == (
        router,
        ChatOptions.model,
        ChatOptions.timeout_s,
    )
    assert _defaults(("nodes",))["target"] == router
    apply = _defaults(("policy", "apply"), __file__, "--admin-key", "k")
    assert apply["target"] == router


def test_help_shows_the_config_defaults_not_dynamic() -> None:
    shown = CliRunner().invoke(cli, ["node", "--help"], terminal_width=200).output
    assert "(dynamic)" not in shown
    heartbeat = NodeConfig.model_fields["heartbeat_interval_s"].default
    assert f"router states its own.  [default: {heartbeat}]" in shown
    assert "[default: small]" in shown


def test_a_field_default_reads_the_model_when_called() -> None:
    default = FieldDefault("mesh.config:NodeConfig", "heartbeat_interval_s")
    assert default() == NodeConfig.model_fields["heartbeat_interval_s"].default
    assert str(default) == str(default())
    assert FieldDefault("mesh.client:ChatOptions", "timeout_s")() == ChatOptions.timeout_s
    assert FieldDefault("mesh.config:NodeConfig", "tier")() == "small"  # enum as its value

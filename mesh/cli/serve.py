"""`mesh up` and `mesh router`: servers run from mesh.yaml, in the foreground until a signal."""

from __future__ import annotations

import click

from mesh.cli.options import (
    MESH_UP_HTTP_LISTEN,
    ROUTER_GRACE_S,
    config_option,
    grace_option,
    http_listen_option,
    listen_option,
    load_mesh_config,
    with_http_listen,
)
from mesh.cli.server_telemetry import server_telemetry
from mesh.serve_loop import run_server, serve_until_signal


def _ready_line(what: str, address: str, http_address: str) -> str:
    return f"{what} {address}" + (
        f", OpenAI-compatible HTTP on {http_address}" if http_address else ""
    )


@click.command()
@config_option()
@listen_option(default=None, help="Router address. Default: the config's router.listen.")
@http_listen_option(
    default_help=f"Default: the config's router.http.listen if set, else {MESH_UP_HTTP_LISTEN}."
)
@grace_option(ROUTER_GRACE_S)
def up(config_path: str | None, listen: str | None, http_listen: str | None, grace: float) -> None:
    """Run the embedded mesh (router, nodes, bridges) in the foreground until Ctrl-C / SIGTERM."""
    from mesh.embedded import EmbeddedMesh

    config = with_http_listen(
        load_mesh_config(config_path), http_listen, default=MESH_UP_HTTP_LISTEN
    )
    mesh = EmbeddedMesh(config, listen=listen, telemetry=server_telemetry("mesh", config.telemetry))
    # Before any engine loads: a missing bridge key fails in a second, not after a minute.
    mesh.check_bridge_keys()
    http = mesh.router.http
    run_server(
        serve_until_signal(
            mesh.start,
            mesh.stop,
            grace_s=grace,
            on_ready=lambda addr: click.echo(
                _ready_line("mesh ready: router on", addr, http.address if http else ""), err=True
            ),
        )
    )


@click.command()
@config_option(required=True, help="mesh.yaml: the router section and its upstreams.")
@listen_option(default=None, help="Router address. Default: the config's router.listen.")
@http_listen_option(default_help="Default: the config's router.http.listen (none).")
@grace_option(ROUTER_GRACE_S)
def router(config_path: str, listen: str | None, http_listen: str | None, grace: float) -> None:
    """Run the router front node over the upstream nodes in its config."""
    from mesh.router.app import RouterRuntime

    config = with_http_listen(load_mesh_config(config_path), http_listen, default=None)
    telemetry = server_telemetry("mesh-router", config.telemetry)
    runtime = RouterRuntime(config.router, telemetry=telemetry)
    http = runtime.http
    run_server(
        serve_until_signal(
            lambda: runtime.start(listen),
            runtime.stop,
            grace_s=grace,
            on_ready=lambda addr: click.echo(
                _ready_line("router ready on", addr, http.address if http else ""), err=True
            ),
        )
    )

"""`mesh up` and `mesh router`: servers run from mesh.yaml, in the foreground until a signal."""

from __future__ import annotations

import asyncio

import click

from mesh.cli.options import (
    ROUTER_GRACE_S,
    config_option,
    grace_option,
    listen_option,
    load_mesh_config,
)
from mesh.cli.server_telemetry import server_telemetry
from mesh.serve_loop import serve_until_signal


@click.command()
@config_option()
@listen_option(default=None, help="Router address. Default: the config's router.listen.")
@grace_option(ROUTER_GRACE_S)
def up(config_path: str | None, listen: str | None, grace: float) -> None:
    """Run the embedded mesh (router, nodes, bridges) in the foreground until Ctrl-C / SIGTERM."""
    from mesh.embedded import EmbeddedMesh

    config = load_mesh_config(config_path)
    mesh = EmbeddedMesh(config, listen=listen, telemetry=server_telemetry("mesh", config.telemetry))
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


@click.command()
@config_option(required=True, help="mesh.yaml: the router section and its upstreams.")
@listen_option(default=None, help="Router address. Default: the config's router.listen.")
@grace_option(ROUTER_GRACE_S)
def router(config_path: str, listen: str | None, grace: float) -> None:
    """Run the router front node over the upstream nodes in its config."""
    from mesh.router.app import RouterRuntime

    config = load_mesh_config(config_path)
    telemetry = server_telemetry("mesh-router", config.telemetry)
    runtime = RouterRuntime(config.router, telemetry=telemetry)
    asyncio.run(
        serve_until_signal(
            lambda: runtime.start(listen),
            runtime.stop,
            grace_s=grace,
            on_ready=lambda addr: click.echo(f"router ready on {addr}", err=True),
        )
    )

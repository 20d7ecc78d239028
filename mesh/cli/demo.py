"""`mesh demo`: a real mesh on this machine, three prompts through it, then a clean stop."""

from __future__ import annotations

import asyncio
import sys

import click

from mesh.cli.options import config_option, load_mesh_config


@click.command()
@config_option()
def demo(config_path: str | None) -> None:
    """A real mesh on this machine: three routed prompts, one streamed, then a clean stop."""
    from mesh.demo import run_demo

    sys.exit(asyncio.run(run_demo(load_mesh_config(config_path))))

"""`mesh models`: the local models a node can serve, and where their converted files are."""

from __future__ import annotations

import click


@click.group()
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
    from nodes.assets import model_path

    click.echo(str(model_path(name)))

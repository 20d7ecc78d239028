"""`mesh cache-eval`: the semantic cache's false and true hits on a labelled pairs file.

Its own module so the router's other commands (mesh/router/cli.py) do not grow with it; the
embedding model is imported only when the command runs.
"""

from __future__ import annotations

import json

import click

from mesh.cli.options import config_option, json_option, load_mesh_config


@click.command("cache-eval")
@click.argument("pairs_file", type=click.Path(exists=True, dir_okay=False))
@config_option(help="Cache settings from this mesh.yaml's router.cache. Default: the built-in.")
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Override the cosine in effect: router.cache.candidate_threshold (verifying) or "
    "similarity_threshold (with --no-verify).",
)
@click.option(
    "--no-verify", is_flag=True, help="Embedding similarity alone (what verification prevents)."
)
@click.option("--reverse", is_flag=True, help="Store b and ask a (the other direction).")
@json_option("One JSON object: the report.")
def cache_eval_command(
    pairs_file: str,
    config_path: str | None,
    threshold: float | None,
    no_verify: bool,
    reverse: bool,
    as_json: bool,
) -> None:
    """Store each pair's first prompt, ask the second: report false and true cache hits."""
    from mesh.embeddings.batching import Embedder, shared_embedder
    from mesh.embeddings.static import shared_static_embedder
    from mesh.router.cache_eval import evaluate, format_report, load_pairs

    try:
        pairs = load_pairs(pairs_file)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    router = load_mesh_config(config_path).router
    settings = router.cache
    overrides: dict[str, object] = {}
    if no_verify:
        overrides["verify"] = False
    if threshold is not None:
        verifying = settings.verify and not no_verify
        overrides["candidate_threshold" if verifying else "similarity_threshold"] = threshold
    if overrides:
        settings = settings.model_copy(update=overrides)
    if not settings.enabled:
        raise click.ClickException("router.cache.enabled is false: nothing to evaluate")
    embedder: Embedder | None = None
    if settings.semantic:  # the vectors the router's cache reads with this config
        embedder = (
            shared_static_embedder()
            if router.embeddings.static
            else shared_embedder(router.embeddings.precision)
        )
    report = evaluate(pairs, settings, embedder, reverse=reverse).as_dict()
    report["vectors"] = (
        "none" if embedder is None else "static" if router.embeddings.static else "minilm"
    )
    click.echo(json.dumps(report) if as_json else format_report(report))

"""`mesh trace`: read the local span store and show one or more traces.

Loaded lazily by the `mesh` group (mesh.cli.COMMANDS); it needs no running mesh, only the
SQLite file that the mesh's processes write to. A missing store or trace (FileNotFoundError,
TraceNotFound) is reported by the `mesh` command's error boundary as one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("trace")
@click.argument("trace_id", required=False)
@click.option("--request", "request_id", metavar="ID", help="Find the trace of a request id.")
@click.option(
    "--last", type=click.IntRange(1, 1000), metavar="N", help="Show the N most recent traces."
)
@click.option("--json", "as_json", is_flag=True, help="Print the spans as JSON instead.")
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MESH_TRACE_STORE",
    help="Span store file (default: traces.db in $MESH_DATA_DIR, else ~/.cache/inference-mesh).",
)
def trace_command(
    trace_id: str | None,
    request_id: str | None,
    last: int | None,
    as_json: bool,
    store: Path | None,
) -> None:
    """Show a trace as a span tree: TRACE_ID (or a prefix), --request ID or --last N.

    With none of them, the most recent trace is shown.
    """
    from mesh.config.telemetry import default_span_store_path
    from mesh.telemetry.span_store import SpanStore, TraceNotFound
    from mesh.telemetry.trace_view import render_trace, spans_json

    chosen = sum(x is not None for x in (trace_id, request_id, last))
    if chosen > 1:
        raise click.UsageError("give one of TRACE_ID, --request or --last")
    spans_store = SpanStore(store or default_span_store_path())
    if trace_id is not None:
        trace_ids = [trace_id]
    elif request_id is not None:
        trace_ids = spans_store.trace_ids_for_request(request_id)
        if not trace_ids:
            raise TraceNotFound(f"no trace carries request id {request_id!r}")
    else:
        trace_ids = spans_store.last_trace_ids(last or 1)
        if not trace_ids:
            raise TraceNotFound(f"the span store {spans_store.path} holds no traces yet")
    traces = [spans_store.trace(t) for t in trace_ids]

    if as_json:
        payload = [{"trace_id": spans[0].trace_id, "spans": spans_json(spans)} for spans in traces]
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    color = sys.stdout.isatty()
    click.echo("\n\n".join(render_trace(spans, color=color) for spans in traces))

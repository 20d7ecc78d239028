"""OpenTelemetry for the mesh: one trace per request across router, guards and nodes.

- `setup_telemetry(service, settings)` once per process -> `Telemetry` (providers, interceptors,
  `metrics: MeshMetrics`, `tracer`).
- `semconv`: attribute names and the route / attempt / guard-chain span helpers, and
  `outgoing_metadata` (W3C trace context for an attempt's gRPC call).
- `configure_logging`: JSON logs carrying trace and span ids.
- `mesh trace` (cli.trace_command) reads the local SQLite span store.
"""

from mesh.config import TelemetrySettings
from mesh.telemetry.grpc_instrumentation import (
    client_interceptors,
    instrumented_channel,
    server_interceptors,
)
from mesh.telemetry.logging import configure_logging
from mesh.telemetry.metrics import MeshMetrics
from mesh.telemetry.semconv import (
    attempt_span,
    guard_chain_span,
    outgoing_metadata,
    record_first_chunk,
    record_input,
    record_output,
    record_route,
    record_route_result,
    record_usage,
    record_verdict,
    route_span,
    tag_request,
)
from mesh.telemetry.setup import Telemetry, setup_telemetry

__all__ = [
    "MeshMetrics",
    "Telemetry",
    "TelemetrySettings",
    "attempt_span",
    "client_interceptors",
    "configure_logging",
    "guard_chain_span",
    "instrumented_channel",
    "outgoing_metadata",
    "record_first_chunk",
    "record_input",
    "record_output",
    "record_route",
    "record_route_result",
    "record_usage",
    "record_verdict",
    "route_span",
    "server_interceptors",
    "setup_telemetry",
    "tag_request",
]

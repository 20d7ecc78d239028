"""Telemetry for a long-running `mesh` server process, and its part of the ready line."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh.config.telemetry import TelemetrySettings
    from mesh.telemetry.setup import Telemetry


def server_telemetry(service: str, settings: TelemetrySettings) -> Telemetry:
    """Set up tracing and metrics, and JSON logs carrying trace ids (MESH_LOG_FORMAT=json)."""
    from mesh.telemetry import configure_logging, setup_telemetry

    if os.environ.get("MESH_LOG_FORMAT", "json") == "json":
        configure_logging(logging.getLogger().level, json=True, service_name=service)
    return setup_telemetry(service, settings)


def flag_settings(metrics_listen: str | None) -> TelemetrySettings:
    """Default telemetry with `--metrics-listen`'s address (None: no endpoint)."""
    from mesh.config.telemetry import TelemetrySettings

    return TelemetrySettings(prometheus_listen=metrics_listen)


def describe_metrics(telemetry: Telemetry) -> str:
    """For the ready line: where /metrics is, or why there is none."""
    if telemetry.settings.prometheus_listen is None:
        return "metrics off"
    if telemetry.metrics_address is None:
        return f"metrics unavailable on {telemetry.settings.prometheus_listen}"
    return f"metrics on http://{telemetry.metrics_address}/metrics"

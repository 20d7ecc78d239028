"""`--metrics-listen` for `mesh node` and `mesh bridge`: where Prometheus /metrics is served.

The router and `mesh up` take it from mesh.yaml (`telemetry.prometheus_listen`); a node started
from the command line has no config file, and every process defaulting to 127.0.0.1:9464 means a
second node on the same machine loses its endpoint. This flag sets the same setting: a host:port
(port 0 picks a free one, printed in the ready line) or `off`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from mesh.config import TelemetrySettings

if TYPE_CHECKING:
    from mesh.telemetry.setup import Telemetry

METRICS_OFF = "off"
DEFAULT_METRICS_LISTEN: str = TelemetrySettings.model_fields["prometheus_listen"].default


def _parse(_ctx: click.Context, _param: click.Parameter, value: str) -> str | None:
    """host:port, or None for `off`; checked by the same validator as the config key."""
    if value.strip().lower() == METRICS_OFF:
        return None
    try:
        TelemetrySettings(prometheus_listen=value)
    except ValidationError:
        raise click.BadParameter(
            f"{value!r} is not host:port (port 0 picks a free one) or {METRICS_OFF}"
        ) from None
    return value


# The click option; the command receives `metrics_listen: str | None`.
metrics_listen_option = click.option(
    "--metrics-listen",
    metavar="ADDR|off",
    default=DEFAULT_METRICS_LISTEN,
    show_default=True,
    callback=_parse,
    help="Prometheus /metrics address (port 0: a free one), or off.",
)


def telemetry_settings(metrics_listen: str | None) -> TelemetrySettings:
    """Default telemetry settings with the flag's metrics address (None: no endpoint)."""
    return TelemetrySettings(prometheus_listen=metrics_listen)


def describe_metrics(telemetry: Telemetry) -> str:
    """For the ready line: where /metrics is, or why there is none."""
    if telemetry.settings.prometheus_listen is None:
        return "metrics off"
    if telemetry.metrics_address is None:
        return f"metrics unavailable on {telemetry.settings.prometheus_listen}"
    return f"metrics on http://{telemetry.metrics_address}/metrics"

"""The `telemetry:` section of mesh.yaml.

Kept apart from the OTel wiring (mesh.telemetry) so that config loads without the SDK.
Every field has a default that works on a laptop with nothing else running: spans go to a local
SQLite store that `mesh trace` reads, metrics to a loopback Prometheus endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mesh.config.common import StrictModel, check_address, data_dir

Exporter = Literal["otlp", "console", "span_store", "memory"]


def default_span_store_path() -> Path:
    """traces.db in the data dir, where every process (router, nodes, `mesh trace`) meets."""
    return data_dir() / "traces.db"


def _default_exporters() -> list[Exporter]:
    return ["span_store"]


class TelemetrySettings(StrictModel):
    """Where spans, metrics and logs go, and what they may contain."""

    enabled: bool = Field(True, description="false: no-op providers, no endpoint, no files")
    exporters: list[Exporter] = Field(
        default_factory=_default_exporters,
        description="span_store: local SQLite for `mesh trace`; otlp: a collector; "
        "console: stdout; memory: tests only",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="collector URL; default: the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT "
        "variables, else http://localhost:4317",
    )
    otlp_protocol: Literal["grpc", "http/protobuf"] = Field(
        "grpc", description="OTLP transport; http/protobuf posts to <endpoint>/v1/traces"
    )
    otlp_insecure: bool = Field(True, description="plaintext gRPC to the collector (in-cluster)")
    sampling_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="share of new traces kept; children follow their parent"
    )
    span_store_path: Path | None = Field(
        None,
        description="SQLite file every process writes to; default traces.db in "
        "$MESH_DATA_DIR, else ~/.cache/inference-mesh",
    )
    span_store_retention_hours: float = Field(
        72.0,
        gt=0,
        description="traces that started longer ago are pruned while running "
        "(with the first batch, then every minute)",
    )
    span_store_max_mb: float = Field(
        256.0,
        gt=0,
        description="past this size the oldest traces are pruned (checked after every batch; "
        "the file may pass it by about one batch, up to 512 spans)",
    )
    prometheus_listen: str | None = Field(
        "127.0.0.1:9464",
        description="host:port of /metrics; null: no endpoint; port 0 picks a free port",
    )
    capture_content: bool = Field(
        False,
        description="put (guard-redacted) prompt and completion text into spans; "
        "off: only a hash and the size",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(True, description="JSON lines with trace_id and span_id")

    _check_prometheus = field_validator("prometheus_listen")(
        classmethod(lambda cls, v: None if v is None else check_address(v))
    )

    @field_validator("exporters")
    @classmethod
    def _unique_exporters(cls, value: list[Exporter]) -> list[Exporter]:
        if len(set(value)) != len(value):
            raise ValueError("each exporter may be named once")
        return value

    def resolved_span_store_path(self) -> Path:
        """The store path with the default applied."""
        return self.span_store_path or default_span_store_path()

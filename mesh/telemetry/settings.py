"""The `telemetry:` section of mesh.yaml.

Kept apart from the OTel wiring so that `mesh.config` can nest it without importing the SDK.
Every field has a default that works on a laptop with nothing else running: spans go to a local
SQLite store that `mesh trace` reads, metrics to a loopback Prometheus endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Exporter = Literal["otlp", "console", "span_store", "memory"]


def default_span_store_path() -> Path:
    """traces.db in $MESH_DATA_DIR, else ~/.cache/inference-mesh (XDG_CACHE_HOME respected).

    MESH_DATA_DIR is where the mesh keeps all its SQLite files: every process started with
    the same value (router, nodes, `mesh trace`) meets in the same store.
    """
    data_dir = os.environ.get("MESH_DATA_DIR")
    if data_dir:
        return Path(data_dir) / "traces.db"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "inference-mesh" / "traces.db"


def _default_exporters() -> list[Exporter]:
    return ["span_store"]


def _check_listen(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (port 0 picks a free one)")
    return value


class TelemetrySettings(BaseModel):
    """Where spans, metrics and logs go, and what they may contain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        72.0, gt=0, description="spans older than this are pruned when a process starts"
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
        classmethod(lambda cls, v: _check_listen(v))
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

"""Tracer and meter providers for one mesh process, built from TelemetrySettings.

OpenTelemetry lets a process set its global providers once. `setup_telemetry` installs them
on the first call and hands the same Telemetry back on later ones; tests pass
`install_global=False` and get private providers, and everything the mesh instruments
(interceptors, spans, metrics) takes its provider from the Telemetry object, not the globals.
A broken exporter or a taken metrics port costs a warning, never the process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc.aio
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer

from mesh.config import TelemetrySettings
from mesh.telemetry import grpc_instrumentation
from mesh.telemetry.metrics import MeshMetrics
from mesh.telemetry.redaction import RedactingProcessor
from mesh.telemetry.span_store import SqliteSpanExporter

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "mesh"
SPAN_STORE_SCHEDULE_DELAY_MS = 500
SPAN_STORE_QUEUE = 16384
SPAN_STORE_EXPORT_BATCH = 512
_lock = threading.Lock()
_installed: Telemetry | None = None


@dataclass
class Telemetry:
    """What one process's instrumentation needs; pass it around instead of reading globals."""

    service_name: str
    settings: TelemetrySettings
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    metrics: MeshMetrics
    memory_exporter: InMemorySpanExporter | None = None
    metrics_address: str | None = None  # host:port of /metrics, with the real port
    _stoppers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def tracer(self) -> Tracer:
        """The tracer for the mesh's own spans (route, attempt, guard)."""
        return self.tracer_provider.get_tracer(INSTRUMENTATION_NAME)

    @property
    def capture_content(self) -> bool:
        return self.settings.capture_content

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """For create_server(interceptors=[*telemetry.server_interceptors(), ...])."""
        return grpc_instrumentation.server_interceptors(self.tracer_provider)

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """For grpc.aio.insecure_channel(..., interceptors=telemetry.client_interceptors())."""
        return grpc_instrumentation.client_interceptors(self.tracer_provider)

    def force_flush(self, timeout_ms: int = 5000) -> bool:
        """Export what is buffered now (before a process exits, or before a test reads)."""
        traces = self.tracer_provider.force_flush(timeout_ms)
        flush_metrics = getattr(self.meter_provider, "force_flush", None)  # none on a no-op one
        metrics = flush_metrics(timeout_ms) if flush_metrics is not None else True
        return bool(traces and metrics)

    def shutdown(self) -> None:
        """Flush and stop exporters and the metrics endpoint; safe to call twice."""
        global _installed
        for stop in self._stoppers:
            try:
                stop()
            except Exception:
                log.warning("telemetry shutdown step failed", exc_info=True)
        self._stoppers.clear()
        with _lock:
            if _installed is self:
                _installed = None  # the global providers stay; a new setup returns a fresh object


def _resource(service_name: str, extra: dict[str, str] | None) -> Resource:
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME; ours win.
    return Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "inference-mesh",
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            **(extra or {}),
        }
    )


def _otlp_exporter(settings: TelemetrySettings) -> SpanExporter:
    endpoint = settings.otlp_endpoint
    if settings.otlp_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        url = endpoint.rstrip("/") + "/v1/traces" if endpoint else None
        return HttpExporter(endpoint=url)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    if endpoint is None:
        return OTLPSpanExporter()  # the standard OTEL_EXPORTER_OTLP_* variables apply
    return OTLPSpanExporter(endpoint=endpoint, insecure=settings.otlp_insecure)


def span_store_processor(
    path: Path, *, retention_hours: float | None, max_mb: float | None = None
) -> SpanProcessor:
    """The SQLite store behind a BatchSpanProcessor: the request only queues the span; rows are
    built and written, and the store's age and size bounds kept, on the processor's thread,
    one transaction per batch.

    The SDK's default queue (2,048) overflowed at ~170 requests/s x ~11 spans
    (benchmarks/router.py logged "Queue full, dropping Span"). A batch goes out every
    SCHEDULE_DELAY_MS or as soon as EXPORT_BATCH spans wait, whichever comes first.
    """
    return BatchSpanProcessor(
        SqliteSpanExporter(path, retention_hours=retention_hours, max_mb=max_mb),
        schedule_delay_millis=SPAN_STORE_SCHEDULE_DELAY_MS,
        max_queue_size=SPAN_STORE_QUEUE,
        max_export_batch_size=SPAN_STORE_EXPORT_BATCH,
    )


def _span_processors(
    settings: TelemetrySettings, extra: Sequence[SpanExporter]
) -> tuple[list[SpanProcessor], InMemorySpanExporter | None]:
    processors: list[SpanProcessor] = []
    memory: InMemorySpanExporter | None = None
    for name in settings.exporters:
        try:
            if name == "memory":
                memory = InMemorySpanExporter()
                processors.append(SimpleSpanProcessor(memory))  # visible at once, for tests
            elif name == "console":
                processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
            elif name == "otlp":
                processors.append(BatchSpanProcessor(_otlp_exporter(settings)))
            elif name == "span_store":
                processors.append(
                    span_store_processor(
                        settings.resolved_span_store_path(),
                        retention_hours=settings.span_store_retention_hours,
                        max_mb=settings.span_store_max_mb,
                    )
                )
        except Exception:
            log.warning(
                "span exporter %s unavailable; spans will not go there", name, exc_info=True
            )
    processors.extend(BatchSpanProcessor(e) for e in extra)
    return processors, memory


def _prometheus(settings: TelemetrySettings) -> tuple[MetricReader | None, str | None, Any]:
    """A Prometheus reader on its own registry, served on the configured loopback address."""
    if settings.prometheus_listen is None:
        return None, None, None
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    host, _, port = settings.prometheus_listen.rpartition(":")
    host = host.strip("[]")
    # A private registry: several Telemetry objects in one process (tests) never mix series.
    registry = CollectorRegistry(auto_describe=True)
    try:
        server, _thread = start_http_server(int(port), addr=host, registry=registry)
    except OSError as exc:
        log.warning("metrics endpoint %s unavailable: %s", settings.prometheus_listen, exc)
        return None, None, None
    reader = PrometheusMetricReader(registry=registry)
    address = f"{host}:{server.server_port}"
    return reader, address, server


def _meter_provider(
    resource: Resource, readers: list[MetricReader]
) -> tuple[MeterProvider, list[Callable[[], None]]]:
    """The SDK's meter provider (and its shutdown) when a reader will read the measurements;
    else the API's no-op one: nothing would read them, and the SDK's metrics package is 1.1 MB
    of a lean router's idle RSS (target 90 MB; measured by import here)."""
    if not readers:
        return NoOpMeterProvider(), []
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    provider = SdkMeterProvider(resource=resource, metric_readers=readers)
    return provider, [provider.shutdown]


def _otlp_metric_reader(settings: TelemetrySettings) -> MetricReader:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = (
        OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=settings.otlp_insecure)
        if settings.otlp_endpoint and settings.otlp_protocol == "grpc"
        else OTLPMetricExporter()
    )
    return PeriodicExportingMetricReader(exporter)


def setup_telemetry(
    service_name: str,
    settings: TelemetrySettings | None = None,
    *,
    install_global: bool = True,
    resource_attributes: dict[str, str] | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Build this process's telemetry; with install_global, make it the process-wide one.

    A second global call returns the first Telemetry unchanged (OTel forbids replacing global
    providers). `span_exporters` / `metric_readers` add to what the settings configure.
    """
    global _installed
    settings = settings or TelemetrySettings.model_validate({})
    with _lock:
        if install_global and _installed is not None:
            if _installed.service_name != service_name or _installed.settings != settings:
                log.warning(
                    "telemetry already set up for %s; ignoring the setup for %s",
                    _installed.service_name,
                    service_name,
                )
            return _installed
        telemetry = _build(
            service_name, settings, resource_attributes, span_exporters, metric_readers
        )
        if install_global:
            trace.set_tracer_provider(telemetry.tracer_provider)
            otel_metrics.set_meter_provider(telemetry.meter_provider)
            _installed = telemetry
        return telemetry


def _build(
    service_name: str,
    settings: TelemetrySettings,
    resource_attributes: dict[str, str] | None,
    span_exporters: Sequence[SpanExporter],
    metric_readers: Sequence[MetricReader],
) -> Telemetry:
    resource = _resource(service_name, resource_attributes)
    if not settings.enabled:
        tracer_provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
        meter_provider, stop_meters = _meter_provider(resource, list(metric_readers))
        return Telemetry(
            service_name,
            settings,
            tracer_provider,
            meter_provider,
            MeshMetrics(meter_provider.get_meter(INSTRUMENTATION_NAME)),
            _stoppers=[tracer_provider.shutdown, *stop_meters],
        )

    tracer_provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sampling_ratio))
    )
    processors, memory = _span_processors(settings, span_exporters)
    for processor in processors:
        # Every exporter, the test-only memory one too, sees exception events made safe.
        tracer_provider.add_span_processor(RedactingProcessor(processor))

    readers = list(metric_readers)
    prometheus, metrics_address, http_server = _prometheus(settings)
    if prometheus is not None:
        readers.append(prometheus)
    if "otlp" in settings.exporters:
        try:
            readers.append(_otlp_metric_reader(settings))
        except Exception:
            log.warning("OTLP metric exporter unavailable", exc_info=True)
    meter_provider, stop_meters = _meter_provider(resource, readers)

    stoppers: list[Callable[[], None]] = [tracer_provider.shutdown, *stop_meters]
    if http_server is not None:
        stoppers.append(http_server.shutdown)
        stoppers.append(http_server.server_close)
    return Telemetry(
        service_name=service_name,
        settings=settings,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        metrics=MeshMetrics(meter_provider.get_meter(INSTRUMENTATION_NAME)),
        memory_exporter=memory,
        metrics_address=metrics_address,
        _stoppers=stoppers,
    )

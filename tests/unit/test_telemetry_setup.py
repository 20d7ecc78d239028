"""setup_telemetry, the settings model, the metrics facade and trace-carrying JSON logs."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pydantic import ValidationError

from mesh.config import TelemetrySettings
from mesh.telemetry.logging import configure_logging
from mesh.telemetry.setup import setup_telemetry


def test_settings_are_strict_and_default_to_a_local_store() -> None:
    settings = TelemetrySettings.model_validate({})
    assert settings.exporters == ["span_store"] and not settings.capture_content
    assert settings.resolved_span_store_path().name == "traces.db"
    assert settings.prometheus_listen == "127.0.0.1:9464"
    with pytest.raises(ValidationError, match="Extra inputs"):
        TelemetrySettings.model_validate({"exporter": ["otlp"]})
    with pytest.raises(ValidationError):
        TelemetrySettings.model_validate({"sampling_ratio": 2})
    with pytest.raises(ValidationError, match="host:port"):
        TelemetrySettings.model_validate({"prometheus_listen": "9464"})
    with pytest.raises(ValidationError, match="once"):
        TelemetrySettings.model_validate({"exporters": ["otlp", "otlp"]})


def test_private_providers_and_metrics(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    settings = TelemetrySettings(
        exporters=["memory", "span_store"],
        span_store_path=tmp_path / "t.db",
        prometheus_listen=None,
    )
    tel = setup_telemetry("svc", settings, install_global=False, metric_readers=[reader])
    try:
        with tel.tracer.start_as_current_span("work"):
            pass
        assert tel.memory_exporter is not None
        [span] = tel.memory_exporter.get_finished_spans()
        assert span.resource.attributes["service.name"] == "svc"
        tel.metrics.record_tokens(
            input_tokens=10, output_tokens=3, provider="openai", request_model="gpt-4o-mini"
        )
        tel.metrics.count_request(status="ok", model="m", node="n", policy="cheapest")
        tel.metrics.count_guard_verdict(guard="secrets", action="block", stage="input")
        tel.metrics.count_cache_lookup(hit=True, saved_usd=0.01)
        tel.metrics.add_cost(0.002, model="m", node="n")
        tel.metrics.set_breaker_state("n", "open")
        tel.metrics.set_node_load("n", running=2, waiting=1, kv_cache_usage=0.5)
        tel.metrics.record_time_to_first_token(0.1, provider="self-hosted", model="m")
        tel.metrics.record_operation_duration(0.3, provider="openai", request_model="m")
        tel.metrics.set_breaker_state("n", "sideways")  # type: ignore[arg-type]  # never raises
        data = reader.get_metrics_data()
        assert data is not None
        names = {
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }
        assert {
            "gen_ai.client.token.usage",
            "gen_ai.client.operation.duration",
            "gen_ai.server.time_to_first_token",
            "mesh.requests",
            "mesh.guard.verdicts",
            "mesh.cache.lookups",
            "mesh.cache.savings",
            "mesh.cost",
            "mesh.breaker.state",
            "mesh.node.requests.running",
            "mesh.node.kv_cache.usage",
        } <= names
    finally:
        tel.shutdown()
        tel.shutdown()


def test_disabled_telemetry_records_nothing(tmp_path: Path) -> None:
    settings = TelemetrySettings(enabled=False, span_store_path=tmp_path / "t.db")
    tel = setup_telemetry("svc", settings, install_global=False)
    with tel.tracer.start_as_current_span("work") as span:
        assert not span.is_recording()
    assert tel.metrics_address is None and not (tmp_path / "t.db").exists()
    tel.shutdown()


def test_with_no_metric_reader_the_meter_is_a_no_op_and_the_sdk_metrics_never_load(
    tmp_path: Path,
) -> None:
    """Metrics nobody reads (no Prometheus endpoint, no OTLP, no reader given) are not
    recorded: the API's no-op provider, and the SDK's metrics package stays unimported (a
    lean router's memory); with a reader the SDK's provider records and flushes."""
    code = (
        "import sys\n"
        "from mesh.config import TelemetrySettings\n"
        "from mesh.telemetry.setup import setup_telemetry\n"
        f"settings = TelemetrySettings(span_store_path={str(tmp_path / 't.db')!r},"
        " prometheus_listen=None)\n"
        "t = setup_telemetry('svc', settings, install_global=False)\n"
        "t.metrics.count_cache_lookup(hit=True, saved_usd=0.5)\n"
        "assert t.force_flush(1000)\n"
        "t.shutdown()\n"
        "print(type(t.meter_provider).__name__, 'opentelemetry.sdk.metrics' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["NoOpMeterProvider", "False"], out.stdout + out.stderr

    reader = InMemoryMetricReader()
    settings = TelemetrySettings(span_store_path=tmp_path / "u.db", prometheus_listen=None)
    telemetry = setup_telemetry("svc", settings, install_global=False, metric_readers=[reader])
    try:
        telemetry.metrics.count_cache_lookup(hit=True, saved_usd=0.5)
        assert telemetry.force_flush(1000)
        data = reader.get_metrics_data()
        names = {
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }
        assert "mesh.cache.lookups" in names, names
    finally:
        telemetry.shutdown()


def test_json_logs_carry_trace_and_span_ids() -> None:
    tel = setup_telemetry(
        "svc", TelemetrySettings(exporters=["memory"], prometheus_listen=None), install_global=False
    )
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("INFO", service_name="svc", stream=stream)
    try:
        assert configure_logging("INFO", stream=stream) is not handler  # replaced, not added
        handler = configure_logging("INFO", service_name="svc", stream=stream)
        assert sum(1 for h in root.handlers if getattr(h, "_mesh_telemetry_handler", False)) == 1
        with tel.tracer.start_as_current_span("work") as span:
            logging.getLogger("mesh.test").info("hello %s", "world")
        logging.getLogger("mesh.test").warning("outside")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        tel.shutdown()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    ctx = span.get_span_context()
    assert inside["message"] == "hello world" and inside["level"] == "INFO"
    assert (
        inside["trace_id"] == f"{ctx.trace_id:032x}" and inside["span_id"] == f"{ctx.span_id:016x}"
    )
    assert inside["service"] == "svc" and inside["logger"] == "mesh.test"
    assert outside["trace_id"] == ""


def test_json_logging_replaces_a_plain_stderr_handler_but_no_other() -> None:
    import sys

    root = logging.getLogger()
    level = root.level
    plain = logging.StreamHandler(sys.stderr)  # what logging.basicConfig installs
    other = logging.StreamHandler(io.StringIO())  # someone else's sink: kept
    root.addHandler(plain)
    root.addHandler(other)
    handler = configure_logging("INFO", service_name="svc")
    try:
        assert plain not in root.handlers, "each line would reach stderr twice"
        assert other in root.handlers and handler in root.handlers
    finally:
        for h in (handler, other, plain):
            root.removeHandler(h)
        root.setLevel(level)


def test_traced_calls_skips_health_reflection_and_probes_for_str_and_bytes_names() -> None:
    from types import SimpleNamespace

    from mesh.telemetry.grpc_instrumentation import traced_calls

    traced = traced_calls()
    for name in (
        "/grpc.health.v1.Health/Check",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/mesh.v1.InferenceService/ListModels",
        "/mesh.v1.RegistryService/Heartbeat",
    ):
        for method in (name, name.encode()):
            assert not traced(SimpleNamespace(method=method)), method
    for name in ("/mesh.v1.InferenceService/Generate", "/mesh.v1.RegistryService/Register"):
        assert traced(SimpleNamespace(method=name)) and traced(
            SimpleNamespace(method=name.encode())
        )


def test_httpx_per_request_lines_are_off_at_info_and_back_at_debug() -> None:
    """A bridge's SDK call through httpx wrote one INFO line per request; now only at DEBUG."""
    import http.server
    import threading

    import httpx

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    root = logging.getLogger()
    level = root.level
    lines: dict[str, list[str]] = {}
    try:
        for name in ("INFO", "DEBUG"):
            stream = io.StringIO()
            handler = configure_logging(name, stream=stream)
            httpx.get(url, timeout=5)
            logging.getLogger("httpx").warning("a real problem")
            lines[name] = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
            root.removeHandler(handler)
    finally:
        server.shutdown()
        root.setLevel(level)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert lines["INFO"] == ["a real problem"]
    assert any(m.startswith("HTTP Request: GET") for m in lines["DEBUG"])

"""The HTTP front's server span and duration histogram (mesh.router.http.tracing.TracedHttp).

Driven as uvicorn drives an ASGI app (scope, receive, send), over small apps written here, with
real SDK providers and in-memory exporters. The router-level tree (route, guard and node spans
below this span) is tested in tests/integration/test_http_front.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh.router.http.tracing import TracedHttp
from mesh.telemetry import semconv as sc

pytestmark = pytest.mark.timeout(30)

CHAT = "/v1/chat/completions"
TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
SECRET = "sk-live-do-not-log-1234"


@dataclass
class Traced:
    app: TracedHttp
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    seen: dict[str, Any]  # what the inner app saw (its current span)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def durations(self) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == sc.HTTP_SERVER_REQUEST_DURATION
            for point in metric.data.data_points
        ]


def scope(path: str = CHAT, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50123),
        "headers": headers or [],
    }


def answering(status: int) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


@pytest.fixture
def make() -> Iterator[Any]:
    def build(inner: ASGIApp | None = None) -> Traced:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        reader = InMemoryMetricReader()
        seen: dict[str, Any] = {}

        async def default(scope: Scope, receive: Receive, send: Send) -> None:
            seen["span"] = trace.get_current_span()
            await answering(200)(scope, receive, send)

        app = TracedHttp(
            inner or default,
            routes=frozenset({CHAT, "/v1/models"}),
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[reader]),
        )
        return Traced(app, spans, reader, seen)

    yield build


async def call(app: ASGIApp, s: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(s, receive, send)
    return sent


async def test_a_caller_traceparent_is_continued_and_the_span_is_current_inside(make: Any) -> None:
    t = make()
    headers = [
        (b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode()),
        (b"authorization", f"Bearer {SECRET}".encode()),
        (b"user-agent", b"OpenAI/Python 1.99"),
        (b"content-type", b"application/json"),
    ]
    sent = await call(t.app, scope(headers=headers))
    assert sent[0]["status"] == 200
    [span] = t.finished()
    assert span.name == f"POST {CHAT}" and span.kind == SpanKind.SERVER
    assert span.context is not None and f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.parent.is_remote
    inner = t.seen["span"].get_span_context()
    assert inner.span_id == span.context.span_id  # the pipeline's spans hang below it
    attributes = dict(span.attributes or {})
    assert attributes[sc.HTTP_REQUEST_METHOD] == "POST"
    assert attributes[sc.HTTP_ROUTE] == CHAT
    assert attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 200
    assert attributes[sc.URL_SCHEME] == "http"
    assert attributes[sc.CLIENT_ADDRESS] == "127.0.0.1"
    assert attributes[sc.USER_AGENT_ORIGINAL] == "OpenAI/Python 1.99"
    assert SECRET not in repr(attributes)  # no header value but the user agent
    assert span.status.status_code == StatusCode.UNSET
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached after the request


async def test_without_traceparent_the_span_starts_a_trace(make: Any) -> None:
    t = make()
    await call(t.app, scope())
    [span] = t.finished()
    assert span.parent is None


@pytest.mark.parametrize(
    "value",
    [b"garbage", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01", b"00-xyz", b"\xff\xfe" * 4000],
)
async def test_a_malformed_traceparent_starts_a_new_trace_and_the_request_is_served(
    make: Any, value: bytes
) -> None:
    t = make()
    sent = await call(t.app, scope(headers=[(b"traceparent", value), (b"tracestate", value)]))
    assert sent[0]["status"] == 200
    [span] = t.finished()
    assert span.parent is None and span.context is not None and span.context.is_valid


async def test_a_path_outside_the_routes_names_no_span_and_no_series(make: Any) -> None:
    t = make(answering(404))
    await call(t.app, scope(path="/" + "x" * 5000))
    [span] = t.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "POST"
    assert sc.HTTP_ROUTE not in attributes
    assert len(str(attributes[sc.URL_PATH])) == 200  # kept short
    [point] = t.durations()
    assert sc.HTTP_ROUTE not in point.attributes
    assert point.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 404


async def test_a_caller_error_is_not_a_server_error_but_a_5xx_is(make: Any) -> None:
    t = make(answering(403))
    await call(t.app, scope())
    t5 = make(answering(503))
    await call(t5.app, scope())
    [blocked], [down] = t.finished(), t5.finished()
    assert blocked.status.status_code == StatusCode.UNSET
    assert sc.ERROR_TYPE not in (blocked.attributes or {})
    assert down.status.status_code == StatusCode.ERROR
    assert (down.attributes or {})[sc.ERROR_TYPE] == "503"
    [point] = t5.durations()
    assert point.attributes[sc.ERROR_TYPE] == "503"


async def test_an_exception_is_recorded_marked_and_raised_on(make: Any) -> None:
    class Boom(RuntimeError):
        pass

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        raise Boom("internal detail")

    t = make(failing)
    with pytest.raises(Boom):
        await call(t.app, scope())
    [span] = t.finished()
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})[sc.ERROR_TYPE] == "Boom"
    assert [e.name for e in span.events] == ["exception"]
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_a_cancelled_request_still_ends_its_span(make: Any) -> None:
    started = asyncio.Event()

    async def hanging(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.sleep(60)

    t = make(hanging)
    task = asyncio.ensure_future(call(t.app, scope()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [span] = t.finished()
    assert (span.attributes or {})[sc.ERROR_TYPE] == "CANCELLED"  # an outcome, as on gRPC
    assert span.status.status_code == StatusCode.UNSET and not span.events


async def test_every_request_is_one_duration_measurement_by_method_route_status(
    make: Any,
) -> None:
    t = make()
    for _ in range(3):
        await call(t.app, scope())
    [point] = t.durations()
    assert point.count == 3
    assert dict(point.attributes) == {
        sc.HTTP_REQUEST_METHOD: "POST",
        sc.HTTP_ROUTE: CHAT,
        sc.HTTP_RESPONSE_STATUS_CODE: 200,
    }


async def test_lifespan_and_other_scopes_pass_through_untraced(make: Any) -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    t = make(inner)
    await t.app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"] and t.finished() == []

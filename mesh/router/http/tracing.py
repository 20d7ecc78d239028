"""The HTTP front's server span and request-duration histogram, as one thin ASGI layer.

It continues a caller's W3C `traceparent` (through the process's propagator, so
OTEL_PROPAGATORS holds as everywhere else), and its SERVER span is current while the pipeline
runs: the route, guard and attempt spans (and through the attempt's metadata, the node's
spans) hang below it, one tree in `mesh trace`. It records method, route, path, scheme,
status and peer with the stable HTTP semantic-convention names, never a body or a header value
but the user agent (no prompt, no key), and no span per ASGI message.

Why not opentelemetry-instrumentation-asgi, which did this job until the tenth stop: measured
in-process on this 2-core machine (the front's app over a do-nothing pipeline, driven as uvicorn
drives it, 5,000 sequential requests on uvloop, the SQLite span store exporting; three runs
each), its middleware cost 290-370 us CPU a request (470-550 against 185 untraced): it decodes
every header again for each attribute it looks up, sets ~12 attributes and four metric
measurements through the SDK's per-value checks. This layer costs 120-140 us (300-320). The
router saturates one core at c32, so that CPU is the front's throughput (issue 17: c32 >= 3x
LiteLLM's, 2.6-3.1x with the library).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh.telemetry import semconv as sc

INSTRUMENTATION_NAME = "mesh.http"
CANCELLED = "CANCELLED"  # error.type of a request the server gave up on (as gRPC's code name)
_MAX_PATH_CHARS = 200  # a scanner's random path is kept short, never a span name
_MAX_AGENT_CHARS = 200
# The histogram's boundaries in seconds, as the semantic conventions advise for HTTP servers.
DURATION_BOUNDARIES_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def _headers_wanted(scope: Scope, wanted: frozenset[bytes]) -> dict[str, str]:
    """The named request headers (ASGI names are lower-case bytes), decoded; the first of a
    repeated header wins."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        if name in wanted:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


class TracedHttp:
    """ASGI middleware: one SERVER span and one duration measurement per HTTP request.

    `routes` are the paths the app serves: a request to one of them is named
    `METHOD /path`, any other by its method only, so random paths cannot mint span names or
    metric series.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: frozenset[str],
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
    ) -> None:
        self.app = app
        self.routes = routes
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME)
        self.duration = meter_provider.get_meter(INSTRUMENTATION_NAME).create_histogram(
            sc.HTTP_SERVER_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP server requests (the router's HTTP front)",
            explicit_bucket_boundaries_advisory=list(DURATION_BOUNDARIES_S),
        )
        fields = propagate.get_global_textmap().fields
        self._carried = frozenset(f.lower().encode("latin-1") for f in fields) | {b"user-agent"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = str(scope.get("method", "HTTP"))
        path = str(scope.get("path", ""))
        route = path if path in self.routes else None
        headers = _headers_wanted(scope, self._carried)
        agent = headers.pop("user-agent", None)
        parent = propagate.extract(headers)
        attributes: dict[str, Any] = {
            sc.HTTP_REQUEST_METHOD: method,
            sc.URL_PATH: path[:_MAX_PATH_CHARS],
            sc.URL_SCHEME: str(scope.get("scheme", "http")),
            sc.NETWORK_PROTOCOL_VERSION: str(scope.get("http_version", "")),
        }
        if route is not None:
            attributes[sc.HTTP_ROUTE] = route
        client = scope.get("client")
        if client:
            attributes[sc.CLIENT_ADDRESS] = str(client[0])
        if agent:
            attributes[sc.USER_AGENT_ORIGINAL] = agent[:_MAX_AGENT_CHARS]
        span = self.tracer.start_span(
            f"{method} {route}" if route else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        status = 0
        error: str | None = None

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, traced_send)
        except asyncio.CancelledError:  # the server stopping mid-request: an outcome, as on gRPC
            error = CANCELLED
            raise
        except BaseException as exc:  # recorded, then the server sees it as before
            span.record_exception(exc)
            error = type(exc).__name__
            raise
        finally:
            otel_context.detach(token)
            self._finish(span, method, route, status, error, started)

    def _finish(
        self,
        span: trace.Span,
        method: str,
        route: str | None,
        status: int,
        error: str | None,
        started: float,
    ) -> None:
        """Status on the span (5xx or an exception is the server's fault, 4xx the caller's:
        not an error of a SERVER span), the span ended, the duration recorded."""
        labels: dict[str, Any] = {sc.HTTP_REQUEST_METHOD: method}
        if route is not None:
            labels[sc.HTTP_ROUTE] = route
        if status:
            span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
            labels[sc.HTTP_RESPONSE_STATUS_CODE] = status
        if error is not None or status >= 500:
            span.set_attribute(sc.ERROR_TYPE, error or str(status))
            labels[sc.ERROR_TYPE] = error or str(status)
            if error != CANCELLED:
                span.set_status(Status(StatusCode.ERROR, error or ""))
        span.end()
        self.duration.record(time.perf_counter() - started, labels)

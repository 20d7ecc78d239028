"""The HTTP front's ASGI app: three routes, the error envelope, tracing outermost.

Built once per router. With telemetry, opentelemetry-instrumentation-asgi wraps everything: it
continues a caller's W3C `traceparent`, and its SERVER span is current while the pipeline runs,
so the route, guard and attempt spans (and through the attempt's metadata, the node's spans)
hang below it: one tree in `mesh trace`. It records method, path, status and peer, never a
body or a header value (no prompt, no key). Its per-message `http send`/`http receive` spans
are off: a stream would otherwise add one span per token.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp

from mesh.router.http.endpoint import GenerationEndpoint
from mesh.router.http.errors import framework_error
from mesh.router.http.models import ModelList
from mesh.telemetry.setup import Telemetry

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
_PATHS = frozenset({CHAT_PATH, MESSAGES_PATH, MODELS_PATH})


def _span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`POST /v1/chat/completions`; any other path is named by its method only, so a
    scanner's random paths cannot mint span names."""
    method = scope.get("method", "HTTP")
    path = scope.get("path", "")
    return (f"{method} {path}" if path in _PATHS else method), {}


def build_app(
    chat: GenerationEndpoint,
    messages: GenerationEndpoint,
    models: ModelList,
    telemetry: Telemetry | None,
) -> ASGIApp:
    app: ASGIApp = Starlette(
        routes=[
            Route(CHAT_PATH, chat.handle, methods=["POST"]),
            Route(MESSAGES_PATH, messages.handle, methods=["POST"]),
            Route(MODELS_PATH, models.handle, methods=["GET"]),
        ],
        exception_handlers={HTTPException: framework_error, Exception: framework_error},
    )
    if telemetry is None:  # as the gRPC server: no interceptors without telemetry
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(  # type: ignore[no-any-return]
        app,
        default_span_details=_span_details,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        exclude_spans=["receive", "send"],
    )

"""The HTTP front's ASGI app: three routes, the error envelope, tracing outermost.

Built once per router. With telemetry, `TracedHttp` (mesh.router.http.tracing) wraps
everything: it continues a caller's W3C `traceparent`, and its SERVER span is current while
the pipeline runs, so the route, guard and attempt spans (and through the attempt's metadata,
the node's spans) hang below it: one tree in `mesh trace`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp

from mesh.router.http.endpoint import GenerationEndpoint
from mesh.router.http.errors import framework_error
from mesh.router.http.models import ModelList
from mesh.router.http.tracing import TracedHttp
from mesh.telemetry.setup import Telemetry

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
ROUTES = frozenset({CHAT_PATH, MESSAGES_PATH, MODELS_PATH})


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
    return TracedHttp(
        app,
        routes=ROUTES,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )

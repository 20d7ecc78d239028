"""HttpFront: the OpenAI-compatible door of one router, wired to that router's parts."""

from __future__ import annotations

from mesh.config import HttpSettings
from mesh.router.auth import ApiKeyAuth
from mesh.router.edge import EdgeLimits
from mesh.router.http.app import build_app
from mesh.router.http.chat_response import OpenAIChat
from mesh.router.http.endpoint import GenerationEndpoint
from mesh.router.http.messages_response import AnthropicMessages
from mesh.router.http.models import ModelList
from mesh.router.http.server import AsgiServer
from mesh.router.pipeline.plan import Planner
from mesh.router.pipeline.run import Pipeline
from mesh.telemetry.setup import Telemetry


class HttpFront:
    """POST /v1/chat/completions, POST /v1/messages and GET /v1/models over the router's
    pipeline and routing table."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        planner: Planner,
        auth: ApiKeyAuth,
        limits: EdgeLimits,
        settings: HttpSettings,
        telemetry: Telemetry | None,
    ) -> None:
        self.settings = settings

        def endpoint(dialect: OpenAIChat | AnthropicMessages) -> GenerationEndpoint:
            return GenerationEndpoint(dialect, pipeline, auth, limits, settings.max_body_bytes)

        app = build_app(
            endpoint(OpenAIChat()),
            endpoint(AnthropicMessages()),
            ModelList(planner, auth),
            telemetry,
        )
        self.server = AsgiServer(app)

    @property
    def address(self) -> str:
        """host:port with the real port once started; "" before."""
        return self.server.address

    async def start(self, listen: str | None = None) -> str:
        target = listen or self.settings.listen
        if not target:
            raise ValueError("the HTTP front has no listen address (router.http.listen)")
        return await self.server.start(target, tls=self.settings.tls)

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)

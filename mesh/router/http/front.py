"""HttpFront: the OpenAI-compatible door of one router, wired to that router's parts."""

from __future__ import annotations

from mesh.config import HttpSettings
from mesh.router.auth import ApiKeyAuth
from mesh.router.edge import EdgeLimits
from mesh.router.http.app import build_app
from mesh.router.http.chat import ChatCompletions
from mesh.router.http.models import ModelList
from mesh.router.http.server import AsgiServer
from mesh.router.pipeline.plan import Planner
from mesh.router.pipeline.run import Pipeline
from mesh.telemetry.setup import Telemetry


class HttpFront:
    """POST /v1/chat/completions and GET /v1/models over the router's pipeline and table."""

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
        chat = ChatCompletions(pipeline, auth, limits, settings.max_body_bytes)
        self.server = AsgiServer(build_app(chat, ModelList(planner, auth), telemetry))

    @property
    def address(self) -> str:
        """host:port with the real port once started; "" before."""
        return self.server.address

    async def start(self, listen: str | None = None) -> str:
        target = listen or self.settings.listen
        if not target:
            raise ValueError("the HTTP front has no listen address (router.http.listen)")
        return await self.server.start(target)

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)

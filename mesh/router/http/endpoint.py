"""The generation endpoint of every wire format: a request through the router's one pipeline.

Auth, body, the dialect's parse, the shared edge (`begin`: validation, size bound, request id,
deadline), then `Pipeline.generate` or `Pipeline.stream`: the same guards, routing, budgets,
ledger and spans as a gRPC call. A stream's first event is awaited before the response starts,
so anything that fails before the first token (a guard block, an unknown model, a spent budget,
every node down) is a plain error status the client's error classes recognise, not a 200
stream.
"""

from __future__ import annotations

import json

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from mesh.contract.errors import MeshError
from mesh.router.auth import ApiKeyAuth
from mesh.router.edge import EdgeLimits, begin
from mesh.router.http.dialect import ChatCall, Dialect
from mesh.router.http.disconnect import ClientGone, unless_disconnected
from mesh.router.http.edge import REQUEST_ID_HEADER, authenticate, read_json, time_remaining
from mesh.router.http.errors import internal_error
from mesh.router.http.extension import route_headers, stream_headers
from mesh.router.http.sse import sse_frames
from mesh.router.pipeline.context import RequestContext
from mesh.router.pipeline.run import Pipeline

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_CLIENT_GONE = 499  # nginx's "client closed request": logged nowhere, read by nobody


class _ClosingStream(StreamingResponse):
    """Closes its body iterator however the response ends.

    Starlette cancels a streaming response whose client disconnected but leaves the iterator
    suspended; closing it now runs the pipeline's cleanup (the upstream abort) at once instead
    of whenever the generator is garbage-collected.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


class GenerationEndpoint:
    """One dialect's endpoint, built once per router."""

    def __init__(
        self,
        dialect: Dialect,
        pipeline: Pipeline,
        auth: ApiKeyAuth,
        limits: EdgeLimits,
        max_body_bytes: int,
    ) -> None:
        self.dialect = dialect
        self.pipeline = pipeline
        self.auth = auth
        self.limits = limits
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        ctx: RequestContext | None = None
        try:
            principal = authenticate(self.auth, request.headers)
            body = await read_json(request, self.max_body_bytes)
            call = self.dialect.parse(body, request.headers.get(REQUEST_ID_HEADER))
            ctx = begin(
                call.request,
                principal,
                stream=call.stream,
                time_remaining=time_remaining(request.headers),
                limits=self.limits,
            )
            if call.stream:
                return await self._stream(request, ctx, call)
            reply = await unless_disconnected(request.receive, self.pipeline.generate(ctx))
            return Response(
                json.dumps(
                    self.dialect.reply_body(reply, ctx.request_id), ensure_ascii=False
                ).encode(),
                headers=route_headers(ctx.request_id, reply.route, reply.usage),
                media_type="application/json",
            )
        except MeshError as err:
            return self.dialect.error_response(err, ctx.request_id if ctx else None)
        except (ClientGone, ClientDisconnect):  # left before its answer, or mid-body
            return Response(status_code=_CLIENT_GONE)
        except Exception as exc:  # the error boundary: no stack trace ever reaches a client
            return self.dialect.error_response(
                internal_error(self.dialect.route, exc), ctx.request_id if ctx else None
            )

    async def _stream(self, request: Request, ctx: RequestContext, call: ChatCall) -> Response:
        events = self.pipeline.stream(ctx)
        try:
            first = await unless_disconnected(request.receive, anext(events))
        except StopAsyncIteration:
            raise MeshError("the stream ended before any event", reason="INTERNAL") from None
        headers = stream_headers(ctx)
        model = headers.get("x-mesh-model", call.model)
        frames = self.dialect.frames(ctx.request_id, model, call.include_usage)
        return _ClosingStream(
            sse_frames(first, events, frames),
            headers={**headers, **_SSE_HEADERS},
            media_type="text/event-stream",
        )

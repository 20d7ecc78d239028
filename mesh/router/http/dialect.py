"""What a wire format (OpenAI chat completions, Anthropic messages) gives the shared endpoint.

The endpoint (`endpoint.py`) does everything that is the same whatever the format: key, body,
the shared edge, the pipeline, disconnects, the x-mesh-* headers. A dialect only converts: its
JSON to a mesh request, a reply to its JSON, a stream to its events, an error to its envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response

from mesh.contract.errors import MeshError
from mesh.v1 import inference_pb2


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A parsed request: the mesh request message and what the answer's format needs."""

    request: inference_pb2.GenerateRequest | inference_pb2.GenerateStreamRequest
    stream: bool
    include_usage: bool  # OpenAI's stream_options.include_usage
    model: str  # as asked for: `auto`, a model id, an alias or a policy name


class Frames(Protocol):
    """The bytes of one streamed answer, event by event."""

    def delta(self, text: str) -> bytes: ...  # pragma: no cover

    def finish(self, summary: inference_pb2.GenerationSummary) -> bytes: ...  # pragma: no cover

    def error(self, err: MeshError) -> bytes: ...  # pragma: no cover


class Dialect(Protocol):
    """One wire format."""

    route: str  # "POST /v1/chat/completions", for logs

    def parse(self, body: Any, request_id: str | None) -> ChatCall: ...  # pragma: no cover

    def reply_body(
        self, reply: inference_pb2.GenerateResponse, request_id: str
    ) -> dict[str, Any]: ...  # pragma: no cover

    def frames(
        self, request_id: str, model: str, include_usage: bool
    ) -> Frames: ...  # pragma: no cover

    def error_response(
        self, err: MeshError, request_id: str | None
    ) -> Response: ...  # pragma: no cover

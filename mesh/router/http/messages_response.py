"""The mesh's answer in Anthropic's Messages format: the `message` object, the named-event
stream (message_start, content_block_*, message_delta, message_stop), the error envelope, and
the dialect that ties them to `messages_request`.

Statuses are the HTTP front's own table (`errors.http_error`), the same for both formats; only
the envelope differs: `{"type": "error", "error": {"type", "message"}}`, with the OpenAI-style
`code` and `param` in the `mesh` object beside the reason. The stream's `message_delta`
carries the usage (input tokens too: they are known only at the end) and the `mesh` object.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from mesh.contract.errors import MeshError
from mesh.router.http.dialect import ChatCall
from mesh.router.http.errors import error_code, error_headers, error_param, http_error
from mesh.router.http.extension import mesh_extension
from mesh.router.http.messages_request import parse_messages_request
from mesh.router.http.sse import sse_event
from mesh.v1 import inference_pb2, types_pb2

STOP_REASONS = {
    types_pb2.FINISH_REASON_UNSPECIFIED: "end_turn",
    types_pb2.FINISH_REASON_STOP: "end_turn",
    types_pb2.FINISH_REASON_LENGTH: "max_tokens",
    types_pb2.FINISH_REASON_ABORTED: "end_turn",
    types_pb2.FINISH_REASON_GUARD_BLOCKED: "refusal",  # Anthropic's name for a refused answer
}
# Anthropic's error types by the front's status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}


def usage_body(usage: types_pb2.Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


def message_body(reply: inference_pb2.GenerateResponse, message_id: str) -> dict[str, Any]:
    """A `message` object for a unary reply."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model or reply.route.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": STOP_REASONS.get(reply.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": usage_body(reply.usage),
        "mesh": mesh_extension(reply.request_id, reply.route, reply.usage, reply.guard_verdicts),
    }


def anthropic_error(err: MeshError) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(http_error(err).status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": err.message},
        "mesh": {
            "reason": err.reason,
            "metadata": err.metadata,
            "code": error_code(err),
            "param": error_param(err),
        },
    }


class MessageFrames:
    """The named SSE events of one Messages stream (one text block)."""

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self._started = False
        self._delta_head = (
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            '"delta":{"type":"text_delta","text":'
        )

    def _start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},  # known at the end
        }
        block = {"type": "text", "text": ""}
        return sse_event({"type": "message_start", "message": message}, "message_start") + (
            sse_event(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            )
        )

    def delta(self, text: str) -> bytes:
        start = b"" if self._started else self._start()
        text_json = json.dumps(text, ensure_ascii=False)
        return start + f"{self._delta_head}{text_json}}}}}\n\n".encode()

    def finish(self, summary: inference_pb2.GenerationSummary) -> bytes:
        start = b"" if self._started else self._start()
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": STOP_REASONS.get(summary.finish_reason, "end_turn"),
                "stop_sequence": None,
            },
            "usage": usage_body(summary.usage),
            "mesh": mesh_extension(
                summary.request_id, summary.route, summary.usage, summary.guard_verdicts
            ),
        }
        return (
            start
            + sse_event({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + sse_event(delta, "message_delta")
            + sse_event({"type": "message_stop"}, "message_stop")
        )

    def error(self, err: MeshError) -> bytes:
        return sse_event(anthropic_error(err), "error")


class AnthropicMessages:
    """POST /v1/messages."""

    route = "POST /v1/messages"

    def parse(self, body: Any, request_id: str | None) -> ChatCall:
        return parse_messages_request(body, request_id)

    def reply_body(self, reply: inference_pb2.GenerateResponse, request_id: str) -> dict[str, Any]:
        return message_body(reply, f"msg_{request_id}")

    def frames(self, request_id: str, model: str, include_usage: bool) -> MessageFrames:
        return MessageFrames(f"msg_{request_id}", model)

    def error_response(self, err: MeshError, request_id: str | None) -> Response:
        return Response(
            json.dumps(anthropic_error(err), ensure_ascii=False).encode(),
            status_code=http_error(err).status,
            headers=error_headers(err, request_id),
            media_type="application/json",
        )

"""The mesh's answer in OpenAI's chat-completions format: the `chat.completion` object, the
`chat.completion.chunk` stream ending in `data: [DONE]`, and the dialect that ties them to
`chat_request` and the OpenAI error envelope.

A stream: text deltas become chunks; the summary becomes the chunk with `finish_reason` (and
the `mesh` extension), then, with `stream_options.include_usage`, one chunk with empty
`choices` and the usage totals, then `[DONE]`. An error after the first chunk is one
`data: {"error": ...}` event, then `[DONE]`. Every chunk of a stream shares id, created and
model, so a delta is written as a fixed head, the JSON-encoded text and a fixed tail instead of
dumping a dict per token.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.responses import Response

from mesh.contract.errors import MeshError
from mesh.router.http.chat_request import parse_chat_request
from mesh.router.http.dialect import ChatCall
from mesh.router.http.errors import error_body, error_response
from mesh.router.http.extension import mesh_extension
from mesh.router.http.sse import sse_event
from mesh.v1 import inference_pb2, types_pb2

FINISH_REASONS = {
    types_pb2.FINISH_REASON_UNSPECIFIED: "stop",
    types_pb2.FINISH_REASON_STOP: "stop",
    types_pb2.FINISH_REASON_LENGTH: "length",
    types_pb2.FINISH_REASON_ABORTED: "stop",
    types_pb2.FINISH_REASON_GUARD_BLOCKED: "content_filter",  # OpenAI's name for a filtered end
}
DONE = b"data: [DONE]\n\n"


def usage_body(usage: types_pb2.Usage) -> dict[str, Any]:
    prompt, completion = usage.input_tokens, usage.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


def completion_body(
    reply: inference_pb2.GenerateResponse, completion_id: str, created: int
) -> dict[str, Any]:
    """A `chat.completion` object for a unary reply."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": reply.model or reply.route.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(reply.finish_reason, "stop"),
            }
        ],
        "usage": usage_body(reply.usage),
        "mesh": mesh_extension(reply.request_id, reply.route, reply.usage, reply.guard_verdicts),
    }


class ChunkFrames:
    """The SSE frames of one chat-completions stream."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.base: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self.include_usage = include_usage
        head = json.dumps(self.base, ensure_ascii=False)[:-1]  # without the closing brace
        self._head = head + ',"choices":[{"index":0,"delta":{'
        self._tail = '},"logprobs":null,"finish_reason":null}]'
        self._tail += ',"usage":null}' if include_usage else "}"
        self._role_sent = False

    def delta(self, text: str) -> bytes:
        role = ""
        if not self._role_sent:
            role, self._role_sent = '"role":"assistant",', True
        content = json.dumps(text, ensure_ascii=False)
        return f'data: {self._head}{role}"content":{content}{self._tail}\n\n'.encode()

    def finish(self, summary: inference_pb2.GenerationSummary) -> bytes:
        """The last chunk, the usage chunk if asked for, and [DONE], written together."""
        model = summary.model or summary.route.model or self.base["model"]
        delta = {} if self._role_sent else {"role": "assistant", "content": ""}
        last: dict[str, Any] = {
            **self.base,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": FINISH_REASONS.get(summary.finish_reason, "stop"),
                }
            ],
            "mesh": mesh_extension(
                summary.request_id, summary.route, summary.usage, summary.guard_verdicts
            ),
        }
        if not self.include_usage:
            return sse_event(last) + DONE
        last["usage"] = None
        usage = {**self.base, "model": model, "choices": [], "usage": usage_body(summary.usage)}
        return sse_event(last) + sse_event(usage) + DONE

    def error(self, err: MeshError) -> bytes:
        return sse_event({"error": error_body(err)}) + DONE


class OpenAIChat:
    """POST /v1/chat/completions."""

    route = "POST /v1/chat/completions"

    def parse(self, body: Any, request_id: str | None) -> ChatCall:
        return parse_chat_request(body, request_id)

    def reply_body(self, reply: inference_pb2.GenerateResponse, request_id: str) -> dict[str, Any]:
        return completion_body(reply, f"chatcmpl-{request_id}", int(time.time()))

    def frames(self, request_id: str, model: str, include_usage: bool) -> ChunkFrames:
        return ChunkFrames(f"chatcmpl-{request_id}", int(time.time()), model, include_usage)

    def error_response(self, err: MeshError, request_id: str | None) -> Response:
        return error_response(err, request_id)

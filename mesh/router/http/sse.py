"""A mesh stream as OpenAI's Server-Sent Events: `chat.completion.chunk`s, then `data: [DONE]`.

Text deltas become chunks; the summary becomes the chunk with `finish_reason` (and the `mesh`
extension), then, with `stream_options.include_usage`, one chunk with empty `choices` and the
usage totals, then `[DONE]`. A failure after the first event is one `data: {"error": ...}`
event and `[DONE]`: the stream always ends visibly, never as a silent truncation.

Every chunk of a stream shares id, created and model, so a delta is written as a fixed head,
the JSON-encoded text and a fixed tail instead of dumping a dict per token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from mesh.contract.errors import MeshError
from mesh.router.http.chat_response import FINISH_REASONS, mesh_extension, usage_body
from mesh.router.http.errors import error_body, internal_error
from mesh.v1 import inference_pb2

log = logging.getLogger(__name__)
DONE = b"data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


class ChunkFrames:
    """The SSE frames of one stream."""

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
        if self.include_usage:
            last["usage"] = None
        frames = [_event(last)]
        if self.include_usage:
            frames.append(
                _event(
                    {**self.base, "model": model, "choices": [], "usage": usage_body(summary.usage)}
                )
            )
        frames.append(DONE)
        return b"".join(frames)

    @staticmethod
    def error(err: MeshError) -> bytes:
        return _event({"error": error_body(err)}) + DONE


async def sse_frames(
    first: inference_pb2.GenerateStreamResponse,
    events: AsyncIterator[inference_pb2.GenerateStreamResponse],
    frames: ChunkFrames,
) -> AsyncIterator[bytes]:
    """The body of a streamed answer, from its first event (already read) to [DONE]."""
    event = first
    try:
        while not event.HasField("summary"):
            yield frames.delta(event.delta.text)
            event = await anext(events)
        yield frames.finish(event.summary)
    except StopAsyncIteration:
        yield frames.error(internal_error("sse_frames", RuntimeError("stream ended early")))
    except MeshError as err:
        yield frames.error(err)
    except Exception as exc:  # the error boundary: no stack trace ever reaches a client
        yield frames.error(internal_error("sse_frames", exc))
    else:
        await _drain(events)
    finally:
        if isinstance(events, AsyncGenerator):  # Pipeline.stream is one
            await events.aclose()


async def _drain(events: AsyncIterator[inference_pb2.GenerateStreamResponse]) -> None:
    """After the summary the pipeline settles and reads the node's status; let it end OK. The
    client already has [DONE], so nothing more is written whatever happens."""
    try:
        async for _ in events:
            pass
    except Exception:
        log.warning("the pipeline failed after a stream's summary", exc_info=True)

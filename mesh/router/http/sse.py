"""A mesh stream as Server-Sent Events, whatever the wire format's events look like.

The first event has already been read (the endpoint awaits it before the response starts);
deltas, then the summary, go to the dialect's `Frames`. A failure after the first event is
the dialect's error event: the stream always ends visibly, never as a silent truncation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from mesh.contract.errors import MeshError
from mesh.router.http.dialect import Frames
from mesh.router.http.errors import internal_error
from mesh.v1 import inference_pb2

log = logging.getLogger(__name__)


def sse_event(payload: dict[str, Any], event: str | None = None) -> bytes:
    """One `data:` event (with an `event:` line if named), blank-line terminated."""
    data = b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


async def sse_frames(
    first: inference_pb2.GenerateStreamResponse,
    events: AsyncIterator[inference_pb2.GenerateStreamResponse],
    frames: Frames,
) -> AsyncIterator[bytes]:
    """The body of a streamed answer, from its first event to the format's last."""
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
    client already has the last event, so nothing more is written whatever happens."""
    try:
        async for _ in events:
            pass
    except Exception:
        log.warning("the pipeline failed after a stream's summary", exc_info=True)

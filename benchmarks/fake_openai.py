"""A fake OpenAI-compatible upstream for benchmarks (not a model): a tiny answer of eight words
to every chat completion, as fast as aiohttp can send it, so what is measured is the proxy in
front of it (LiteLLM's, or the router + bridge), never an engine. The last word counts the
requests: no two answers are the same text, as with a real model (a router's output guards
remember the texts they allowed, and one fixed answer would be checked only once).

Serves GET /v1/models (readiness, the bridge's health probe) and POST /v1/chat/completions,
unary and SSE streaming (with a usage chunk when `stream_options.include_usage` asks). It runs
in its own process: `python -m benchmarks.fake_openai --listen 127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any

from aiohttp import web

ANSWER_WORDS = ("Paris", " is", " the", " capital", " of", " France", ".", " Yes")
_served = itertools.count(1)


def _answer_words() -> tuple[str, ...]:
    """ANSWER_WORDS with the last word replaced by this request's number."""
    return (*ANSWER_WORDS[:-1], f" {next(_served)}")


def _usage(body: dict[str, Any]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in body.get("messages", []))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(ANSWER_WORDS),
        "total_tokens": prompt + len(ANSWER_WORDS),
    }


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def models(_request: web.Request) -> web.Response:
    return web.json_response(
        {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "bench"}]}
    )


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = str(body.get("model", "fake-model"))
    if not body.get("stream"):
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(_answer_words())},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(body),
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    events = [_chunk(model, {"role": "assistant", "content": ""}, None)]
    events += [_chunk(model, {"content": word}, None) for word in _answer_words()]
    events.append(_chunk(model, {}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**_chunk(model, {}, None), "choices": [], "usage": _usage(body)})
    for event in events:
        await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def app() -> web.Application:
    application = web.Application()
    application.router.add_get("/v1/models", models)
    application.router.add_post("/v1/chat/completions", chat)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port (loopback)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(app(), host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()

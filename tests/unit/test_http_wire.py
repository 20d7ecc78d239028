"""The HTTP front's conversions, without a server: OpenAI JSON -> mesh request, errors ->
envelope and status, stream frames, and how `mesh up` / `mesh router` pick the HTTP address."""

from __future__ import annotations

import json
from typing import Any

import pytest

from guards.errors import GuardBlocked
from mesh.cli.options import MESH_UP_HTTP_LISTEN, with_http_listen
from mesh.config import HttpSettings, RouterConfig, parse_config
from mesh.contract.errors import (
    Code,
    DeadlineExceeded,
    FieldViolation,
    InvalidRequest,
    MeshError,
    ModelNotFound,
    Overloaded,
    UpstreamUnavailable,
)
from mesh.router.auth import Unauthenticated
from mesh.router.budget import BudgetExceeded
from mesh.router.http.chat_request import parse_chat_request
from mesh.router.http.chat_response import ChunkFrames
from mesh.router.http.errors import (
    RequestTooLarge,
    UnsupportedContentEncoding,
    error_body,
    error_headers,
    http_error,
    openai_param,
)
from mesh.router.http.extension import mesh_extension
from mesh.router.http.messages_request import parse_messages_request
from mesh.router.http.messages_response import MessageFrames
from mesh.v1 import inference_pb2, types_pb2


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields}


# --- requests ---------------------------------------------------------------------------------
def test_a_full_request_becomes_the_mesh_request() -> None:
    call = parse_chat_request(
        body(
            model=" smollm2 ",
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": t} for t in "ab"]},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "go", "name": "ann"},
            ],
            temperature=0.5, top_p=0.9, max_tokens=7, stop="END", seed=42, user="u-1",
            metadata={"x": "y"}, n=1, tools=[], presence_penalty=0,
        ),
        "rid-1",
    )  # fmt: skip
    request = call.request
    assert isinstance(request, inference_pb2.GenerateRequest) and not call.stream
    assert [(m.role, m.content) for m in request.messages] == [
        (types_pb2.ROLE_SYSTEM, "Be brief."),
        (types_pb2.ROLE_USER, "a\nb"),
        (types_pb2.ROLE_ASSISTANT, "ok"),
        (types_pb2.ROLE_USER, "go"),
    ]
    sampling = request.sampling
    assert (sampling.temperature, round(sampling.top_p, 3), sampling.max_tokens) == (0.5, 0.9, 7)
    assert (list(sampling.stop), sampling.seed) == (["END"], 42)
    assert request.routing.model == "smollm2" and request.request_id == "rid-1"


def test_streams_and_the_newer_max_tokens_field() -> None:
    call = parse_chat_request(
        body(stream=True, stream_options={"include_usage": True}, max_tokens=9,
             max_completion_tokens=3, stop=["a", "b"]),
        None,
    )  # fmt: skip
    assert isinstance(call.request, inference_pb2.GenerateStreamRequest)
    assert call.stream and call.include_usage
    assert call.request.sampling.max_tokens == 3 and list(call.request.sampling.stop) == ["a", "b"]
    unary = parse_chat_request(body(stream_options={"include_usage": True}), None)
    assert not unary.include_usage  # only a stream has a usage chunk
    assert not unary.request.sampling.HasField("temperature")


def test_every_problem_is_reported_at_once_under_its_openai_name() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(
            {
                "messages": [
                    {"role": "tool", "content": "x"},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                    "hello",
                ],
                "temperature": "hot",
                "max_tokens": True,
                "seed": 2**70,
                "stop": 3,
                "stream": "yes",
                "n": 2,
                "tools": [{"type": "function"}],
                "response_format": {"type": "json_object"},
                "logprobs": True,
                "user": 42,
                "metadata": {"team": 7},
                "store": "no",
            },
            None,
        )
    fields = [v.field for v in info.value.violations]
    assert fields == [
        "model",
        "n",
        "tools",
        "logprobs",
        "response_format",
        "user",
        "metadata",
        "store",
        "messages[0].role",
        "messages[1].content[0].type",
        "messages[2]",
        "stop",
        "temperature",
        "max_tokens",
        "seed",
        "stream",
    ]


def test_ignored_parameters_are_accepted_when_their_type_is_right() -> None:
    call = parse_chat_request(body(user="u-17", metadata={"team": "search"}, store=False), None)
    assert call.request.messages[0].content == "hi"


@pytest.mark.parametrize("value", [None, [], {}, "text", 3])
def test_a_body_without_messages_or_not_an_object_is_refused(value: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(value if not isinstance(value, list) else {"model": "auto"}, None)
    assert info.value.violations[0].field in ("body", "model", "messages")


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status", "kind", "code"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error", "invalid_request"),
        (
            InvalidRequest("long", reason="CONTEXT_WINDOW_EXCEEDED"),
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        (Unauthenticated("who"), 401, "authentication_error", "invalid_api_key"),
        (GuardBlocked("no"), 403, "permission_error", "guard_blocked"),
        (ModelNotFound("gpt-9"), 404, "invalid_request_error", "model_not_found"),
        (RequestTooLarge("big"), 413, "invalid_request_error", "request_too_large"),
        (
            UnsupportedContentEncoding("br"),
            415,
            "invalid_request_error",
            "unsupported_content_encoding",
        ),
        (BudgetExceeded("spent"), 429, "insufficient_quota", "budget_exceeded"),
        (Overloaded("busy", retry_after_s=1.5), 429, "rate_limit_error", "overloaded"),
        (MeshError("bug"), 500, "server_error", "internal"),
        (UpstreamUnavailable("down"), 503, "server_error", "upstream_unavailable"),
        (DeadlineExceeded("late"), 504, "timeout_error", "deadline_exceeded"),
        (MeshError("?", code=Code.UNIMPLEMENTED, reason="NOPE"), 501, "server_error", "nope"),
    ],
)
def test_each_error_has_its_status_type_and_code(
    error: MeshError, status: int, kind: str, code: str
) -> None:
    assert http_error(error).status == status
    envelope = error_body(error)
    assert (envelope["type"], envelope["code"], envelope["message"]) == (kind, code, error.message)
    assert envelope["mesh"] == {"reason": error.reason, "metadata": error.metadata}


def test_retry_headers_follow_the_error() -> None:
    assert error_headers(Overloaded("busy", retry_after_s=1.2), "r-1") == {
        "x-should-retry": "true",
        "x-request-id": "r-1",
        "retry-after": "2",
        "retry-after-ms": "1200",
    }
    assert error_headers(BudgetExceeded("spent"), None) == {"x-should-retry": "false"}


@pytest.mark.parametrize(
    ("field", "param"),
    [
        ("sampling.temperature", "temperature"),
        ("sampling.stop[1]", "stop[1]"),
        ("routing.model", "model"),
        ("routing.min_tier", "min_tier"),
        ("messages[0].content", "messages[0].content"),
    ],
)
def test_contract_field_names_read_as_openai_params(field: str, param: str) -> None:
    assert openai_param(field) == param
    error = InvalidRequest("bad", violations=[FieldViolation(field, "no")])
    assert error_body(error)["param"] == param


# --- stream frames ----------------------------------------------------------------------------
def _events(frames: bytes) -> list[str]:
    assert frames.endswith(b"\n\n")
    return [e.removeprefix("data: ") for e in frames.decode().split("\n\n") if e]


def test_chunks_are_openai_chunks_and_the_end_carries_usage_and_done() -> None:
    frames = ChunkFrames("chatcmpl-1", 1700000000, "m-1", include_usage=True)
    first, second = (json.loads(_events(frames.delta(t))[0]) for t in ('Hé "quoted"\n', "more"))
    assert first == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m-1",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": 'Hé "quoted"\n'},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "usage": None,
    }
    assert second["choices"][0]["delta"] == {"content": "more"}
    summary = inference_pb2.GenerationSummary(
        request_id="r-1",
        finish_reason=types_pb2.FINISH_REASON_GUARD_BLOCKED,
        usage=types_pb2.Usage(input_tokens=5, output_tokens=2, cached_input_tokens=1, cost_usd=0.5),
        route=types_pb2.RouteInfo(node_id="n", model="m-2", tier=types_pb2.MODEL_TIER_SMALL),
        model="m-2",
    )
    last, usage, done = _events(frames.finish(summary))
    finish = json.loads(last)
    assert finish["choices"][0]["finish_reason"] == "content_filter"
    assert finish["model"] == "m-2" and finish["usage"] is None
    assert finish["mesh"]["cost_usd"] == 0.5 and finish["mesh"]["route"]["tier"] == "small"
    assert json.loads(usage)["choices"] == []
    assert json.loads(usage)["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 1},
    }
    assert done == "[DONE]"


def test_an_error_event_is_followed_by_done() -> None:
    frames = ChunkFrames("chatcmpl-2", 0, "m", include_usage=False)
    error, done = _events(frames.error(UpstreamUnavailable("node gone")))
    assert json.loads(error)["error"]["code"] == "upstream_unavailable" and done == "[DONE]"


# --- Anthropic Messages -----------------------------------------------------------------------
def test_a_messages_body_becomes_the_mesh_request() -> None:
    call = parse_messages_request(
        {
            "model": "claude-x",
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
                {"role": "user", "content": "again"},
            ],
            "max_tokens": 5, "temperature": 0, "top_k": 3, "stop_sequences": ["END"],
            "metadata": {"user_id": "u"}, "stream": True,
        },
        None,
    )  # fmt: skip
    assert call.stream and not call.include_usage
    assert [(m.role, m.content) for m in call.request.messages] == [
        (types_pb2.ROLE_SYSTEM, "Be brief."),
        (types_pb2.ROLE_USER, "hi"),
        (types_pb2.ROLE_ASSISTANT, "hello"),
        (types_pb2.ROLE_USER, "again"),
    ]
    sampling = call.request.sampling
    assert (sampling.max_tokens, sampling.temperature, sampling.top_k) == (5, 0.0, 3)
    assert list(sampling.stop) == ["END"] and sampling.HasField("temperature")
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "x"},
                    {"role": "user", "content": [{"type": "image", "source": {}}]},
                ],
                "tools": [{"name": "t"}],
                "max_tokens": -1,
            },
            None,
        )
    assert [v.field for v in info.value.violations] == [
        "tools",
        "messages[0].role",
        "messages[1].content[0].type",
        "max_tokens",
    ]


def test_message_events_are_anthropics_named_events() -> None:
    frames = MessageFrames("msg_1", "m-1")
    events = _named(frames.delta("Hi") + frames.delta(" there"))
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]
    assert events[0][1]["message"]["id"] == "msg_1"
    assert events[3][1]["delta"] == {"type": "text_delta", "text": " there"}
    summary = inference_pb2.GenerationSummary(
        finish_reason=types_pb2.FINISH_REASON_LENGTH,
        usage=types_pb2.Usage(input_tokens=4, output_tokens=2),
    )
    end = _named(frames.finish(summary))
    assert [name for name, _ in end] == ["content_block_stop", "message_delta", "message_stop"]
    assert end[1][1]["delta"]["stop_reason"] == "max_tokens"
    assert end[1][1]["usage"]["input_tokens"] == 4
    ((name, error),) = _named(frames.error(BudgetExceeded("spent")))
    assert name == "error" and error["error"]["type"] == "rate_limit_error"
    assert error["mesh"]["code"] == "budget_exceeded"


def _named(frames: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in frames.decode().split("\n\n")[:-1]:
        event, data = block.split("\n")
        out.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


# --- where the HTTP front listens -------------------------------------------------------------
def test_http_listen_off_and_yaml_off_disable_it() -> None:
    assert HttpSettings(listen="off").listen is None
    assert HttpSettings(listen="OFF").listen is None
    assert RouterConfig().http.listen is None  # `mesh router`: none unless configured
    loaded = parse_config("router:\n  http: {listen: off, max_body_bytes: 2048}\n", "m.yaml")
    assert loaded.router.http.listen is None and loaded.router.http.max_body_bytes == 2048
    with pytest.raises(ValueError, match="host:port"):
        HttpSettings(listen="8080")


def test_flag_then_mesh_yaml_then_the_command_default() -> None:
    unset = parse_config("router: {}\n", "m.yaml")
    configured = parse_config("router:\n  http: {listen: '127.0.0.1:9000'}\n", "m.yaml")
    disabled = parse_config("router:\n  http: {listen: null}\n", "m.yaml")

    def listen(config: Any, flag: str | None, default: str | None) -> str | None:
        return with_http_listen(config, flag, default=default).router.http.listen

    assert listen(unset, None, MESH_UP_HTTP_LISTEN) == "127.0.0.1:8080"
    assert listen(unset, None, None) is None
    assert listen(configured, None, MESH_UP_HTTP_LISTEN) == "127.0.0.1:9000"
    assert listen(disabled, None, MESH_UP_HTTP_LISTEN) is None
    assert listen(configured, "off", MESH_UP_HTTP_LISTEN) is None
    assert listen(disabled, "127.0.0.1:0", None) == "127.0.0.1:0"


def test_the_mesh_object_names_why_a_guard_could_not_decide_and_only_then() -> None:
    failed = types_pb2.GuardVerdict(
        guard="flaky",
        stage=types_pb2.GUARD_STAGE_OUTPUT,
        action=types_pb2.GUARD_ACTION_FLAG,
        mode=types_pb2.GUARD_MODE_ENFORCE,
        findings=[types_pb2.GuardFinding(type="GUARD_ERROR", score=1.0)],
        error_type="timeout",
    )
    ran = types_pb2.GuardVerdict(guard="pii", action=types_pb2.GUARD_ACTION_ALLOW)
    extension = mesh_extension("req-1", types_pb2.RouteInfo(), types_pb2.Usage(), [failed, ran])
    flaky, pii = extension["guard_verdicts"]
    assert (flaky["guard"], flaky["action"], flaky["error_type"]) == ("flaky", "flag", "timeout")
    assert "error_type" not in pii

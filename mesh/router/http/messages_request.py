"""An Anthropic Messages body -> the mesh's GenerateRequest / GenerateStreamRequest.

The same rules as chat completions (`chat_request`): shapes here, value ranges at the shared
edge, every problem at once under the Anthropic parameter's name, and what the mesh cannot
honour (tools, extended thinking, non-text blocks) refused rather than dropped. `system` (a
string or text blocks) becomes the first turn; `max_tokens`, required by Anthropic's API, is
optional here as on the mesh's own API.
"""

from __future__ import annotations

from typing import Any

from mesh.contract.errors import FieldViolation, InvalidRequest
from mesh.router.http.dialect import ChatCall
from mesh.v1 import inference_pb2, types_pb2

_ROLES = {"user": types_pb2.ROLE_USER, "assistant": types_pb2.ROLE_ASSISTANT}
_INT32_MAX = 2**31 - 1
_UNSUPPORTED = ("tools", "tool_choice", "thinking", "mcp_servers", "container")


def _text(value: Any, param: str, problems: list[FieldViolation]) -> str:
    """A string, or text blocks joined by newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, block in enumerate(value):
            if not isinstance(block, dict) or block.get("type") != "text":
                problems.append(FieldViolation(f"{param}[{j}].type", "only text blocks"))
            elif not isinstance(block.get("text"), str):
                problems.append(FieldViolation(f"{param}[{j}].text", "must be a string"))
            else:
                texts.append(block["text"])
        return "\n".join(texts)
    problems.append(FieldViolation(param, "must be a string or a list of text blocks"))
    return ""


def _number(body: dict[str, Any], name: str, problems: list[FieldViolation]) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(FieldViolation(name, "must be a number"))
        return None
    return float(value)


def _count(body: dict[str, Any], name: str, problems: list[FieldViolation]) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32_MAX:
        problems.append(FieldViolation(name, f"must be an integer within [0, {_INT32_MAX}]"))
        return None
    return value


def parse_messages_request(body: Any, request_id: str | None) -> ChatCall:
    """The mesh request for a Messages body; InvalidRequest lists every problem."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            "the body must be a JSON object",
            violations=[FieldViolation("body", "must be a JSON object")],
        )
    problems: list[FieldViolation] = []
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        problems.append(
            FieldViolation("model", "required: `auto`, a model id, an alias or a policy name")
        )
        model = ""
    problems += [
        FieldViolation(n, "not supported by the mesh") for n in _UNSUPPORTED if body.get(n)
    ]
    messages: list[types_pb2.ChatMessage] = []
    if body.get("system") is not None:
        system = _text(body["system"], "system", problems)
        messages.append(types_pb2.ChatMessage(role=types_pb2.ROLE_SYSTEM, content=system))
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        problems.append(FieldViolation("messages", "must be a non-empty list of messages"))
        turns = []
    for i, turn in enumerate(turns):
        role = _ROLES.get(str(turn.get("role"))) if isinstance(turn, dict) else None
        if role is None:
            problems.append(FieldViolation(f"messages[{i}].role", "must be user or assistant"))
            continue
        content = _text(turn.get("content"), f"messages[{i}].content", problems)
        messages.append(types_pb2.ChatMessage(role=role, content=content))
    sampling = types_pb2.SamplingParams()
    stops = body.get("stop_sequences")
    if stops is not None:
        if isinstance(stops, list) and all(isinstance(s, str) for s in stops):
            sampling.stop.extend(stops)
        else:
            problems.append(FieldViolation("stop_sequences", "must be a list of strings"))
    for name in ("temperature", "top_p"):
        number = _number(body, name, problems)
        if number is not None:
            setattr(sampling, name, number)
    for name in ("top_k", "max_tokens"):
        count = _count(body, name, problems)
        if count is not None:
            setattr(sampling, name, count)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        problems.append(FieldViolation("stream", "must be true or false"))
        stream = False
    if problems:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems)
        raise InvalidRequest(f"invalid request: {summary}", violations=problems)
    cls = inference_pb2.GenerateStreamRequest if stream else inference_pb2.GenerateRequest
    request = cls(
        messages=messages,
        sampling=sampling,
        routing=types_pb2.RoutingHints(model=model.strip()),
        request_id=request_id or "",
    )
    return ChatCall(request, stream, False, model)

"""An OpenAI chat-completions body -> the mesh's GenerateRequest / GenerateStreamRequest.

Only the shape is checked here (types, roles, content parts) and every problem is reported at
once, under the OpenAI parameter's name. Value ranges (temperature, max_tokens, stop strings,
prompt size) are the edge's: `mesh.router.edge.begin` checks them for both doors alike.

A parameter whose meaning the mesh cannot honour (tools, n > 1, logprobs, JSON mode) is refused
with 400 rather than dropped: a client relying on it would otherwise get a wrong answer that
looks right. Parameters that change nothing about the answer (`user`, `metadata`, `store`) are
accepted and ignored, once their type is right (as OpenAI's API checks them: a client sending
`user: 42` learns it here, not from the provider it moves to next).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mesh.contract.errors import FieldViolation, InvalidRequest
from mesh.router.http.dialect import ChatCall
from mesh.v1 import inference_pb2, types_pb2

_ROLES = {
    "system": types_pb2.ROLE_SYSTEM,
    "developer": types_pb2.ROLE_SYSTEM,  # OpenAI's newer name for the system turn
    "user": types_pb2.ROLE_USER,
    "assistant": types_pb2.ROLE_ASSISTANT,
}
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _set(value: Any) -> bool:
    return value is not None


# Parameter -> "the request asks for something the mesh does not do".
_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v is not None and v != 1,
    "tools": bool,
    "functions": bool,
    "tool_choice": lambda v: v not in (None, "none"),
    "function_call": lambda v: v not in (None, "none"),
    "logprobs": bool,
    "top_logprobs": _set,
    "logit_bias": bool,
    "response_format": lambda v: v is not None and v != {"type": "text"},
    "presence_penalty": lambda v: v not in (None, 0),
    "frequency_penalty": lambda v: v not in (None, 0),
    "audio": _set,
    "modalities": lambda v: v not in (None, ["text"]),
    "prediction": _set,
    "web_search_options": _set,
}


class _Problems:
    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def add(self, param: str, description: str) -> None:
        self.found.append(FieldViolation(param, description))

    def number(self, body: Mapping[str, Any], name: str) -> float | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(name, "must be a number")
            return None
        return float(value)

    def integer(self, body: Mapping[str, Any], name: str, bounds: tuple[int, int]) -> int | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(name, "must be an integer")
            return None
        if not bounds[0] <= value <= bounds[1]:
            self.add(name, f"must be within [{bounds[0]}, {bounds[1]}]")
            return None
        return value

    def boolean(self, body: Mapping[str, Any], name: str) -> bool:
        value = body.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.add(name, "must be true or false")
            return False
        return value


def _content(value: Any, param: str, problems: _Problems) -> str:
    """A message's content: a string, or text parts (joined by newlines)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                problems.add(f"{param}[{j}].type", "only text parts are supported")
            elif not isinstance(part.get("text"), str):
                problems.add(f"{param}[{j}].text", "must be a string")
            else:
                texts.append(part["text"])
        return "\n".join(texts)
    problems.add(param, "must be a string or a list of text parts")
    return ""


def _messages(value: Any, problems: _Problems) -> list[types_pb2.ChatMessage]:
    if not isinstance(value, list) or not value:
        problems.add("messages", "must be a non-empty list of messages")
        return []
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            problems.add(f"messages[{i}]", "must be an object")
            continue
        role = _ROLES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            problems.add(f"messages[{i}].role", "must be system, developer, user or assistant")
            continue
        content = _content(message.get("content"), f"messages[{i}].content", problems)
        out.append(types_pb2.ChatMessage(role=role, content=content))
    return out


def _ignored(body: Mapping[str, Any], problems: _Problems) -> None:
    """Type checks of the parameters the mesh accepts and ignores."""
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        problems.add("user", "must be a string")
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        problems.add("metadata", "must be an object of string values")
    problems.boolean(body, "store")


def _stop(value: Any, problems: _Problems) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    problems.add("stop", "must be a string or a list of strings")
    return []


def parse_chat_request(body: Any, request_id: str | None) -> ChatCall:
    """The mesh request for a chat-completions body; InvalidRequest lists every problem."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            "the body must be a JSON object",
            violations=[FieldViolation("body", "must be a JSON object")],
        )
    problems = _Problems()
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        problems.add("model", "required: `auto`, a model id, an alias or a policy name")
        model = ""
    for name, asks in _UNSUPPORTED.items():
        if asks(body.get(name)):
            problems.add(name, "not supported by the mesh")
    _ignored(body, problems)
    messages = _messages(body.get("messages"), problems)
    sampling = types_pb2.SamplingParams(stop=_stop(body.get("stop"), problems))
    temperature = problems.number(body, "temperature")
    if temperature is not None:
        sampling.temperature = temperature
    top_p = problems.number(body, "top_p")
    if top_p is not None:
        sampling.top_p = top_p
    top_k = problems.integer(body, "top_k", _INT32)  # vLLM's extension, same meaning here
    if top_k is not None:
        sampling.top_k = top_k
    # max_completion_tokens replaced max_tokens in OpenAI's API; the newer one wins.
    max_tokens = problems.integer(body, "max_completion_tokens", _INT32)
    if max_tokens is None:
        max_tokens = problems.integer(body, "max_tokens", _INT32)
    if max_tokens is not None:
        sampling.max_tokens = max_tokens
    seed = problems.integer(body, "seed", _INT64)
    if seed is not None:
        sampling.seed = seed
    stream = problems.boolean(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            problems.add("stream_options", "must be an object")
        else:
            include_usage = problems.boolean(options, "include_usage")
    if problems.found:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems.found)
        raise InvalidRequest(f"invalid request: {summary}", violations=problems.found)
    cls = inference_pb2.GenerateStreamRequest if stream else inference_pb2.GenerateRequest
    request = cls(
        messages=messages,
        sampling=sampling,
        routing=types_pb2.RoutingHints(model=model.strip()),
        request_id=request_id or "",
    )
    return ChatCall(request, stream, include_usage and stream, model)

"""Client helpers on the generated stub: build requests, call, and render results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc.aio

from mesh.contract.serving import channel_options
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2

if TYPE_CHECKING:
    from mesh.config import ClientTls

API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True)
class ChatOptions:
    """What `mesh chat` lets a user set."""

    model: str = "auto"
    max_tokens: int | None = None
    temperature: float | None = None
    system: str | None = None
    timeout_s: float = 120.0
    api_key: str | None = None


def build_messages(prompt: str, system: str | None) -> list[types_pb2.ChatMessage]:
    messages = []
    if system:
        messages.append(types_pb2.ChatMessage(role=types_pb2.ROLE_SYSTEM, content=system))
    messages.append(types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=prompt))
    return messages


def build_request(prompt: str, options: ChatOptions) -> inference_pb2.GenerateRequest:
    sampling = types_pb2.SamplingParams()
    if options.max_tokens is not None:
        sampling.max_tokens = options.max_tokens
    if options.temperature is not None:
        sampling.temperature = options.temperature
    return inference_pb2.GenerateRequest(
        messages=build_messages(prompt, options.system),
        sampling=sampling,
        routing=types_pb2.RoutingHints(model=options.model),
    )


def _metadata(options: ChatOptions) -> Sequence[tuple[str, str]] | None:
    return [(API_KEY_HEADER, options.api_key)] if options.api_key else None


def open_channel(target: str, tls: ClientTls | None = None) -> grpc.aio.Channel:
    """A channel to a router or node: plaintext, or TLS as `tls` says (files read now)."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=channel_options())
    from mesh.contract.tls import channel_credentials, tls_channel_options

    return grpc.aio.secure_channel(
        target,
        channel_credentials(tls),
        options=[*channel_options(), *tls_channel_options(tls)],
    )


async def generate(
    channel: grpc.aio.Channel, prompt: str, options: ChatOptions
) -> inference_pb2.GenerateResponse:
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    reply: inference_pb2.GenerateResponse = await stub.Generate(
        build_request(prompt, options), timeout=options.timeout_s, metadata=_metadata(options)
    )
    return reply


async def generate_stream(
    channel: grpc.aio.Channel, prompt: str, options: ChatOptions
) -> AsyncIterator[inference_pb2.GenerateStreamResponse]:
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    request = inference_pb2.GenerateStreamRequest.FromString(
        build_request(prompt, options).SerializeToString()  # same wire format by design
    )
    call = stub.GenerateStream(request, timeout=options.timeout_s, metadata=_metadata(options))
    try:
        async for event in call:
            yield event
    finally:
        call.cancel()


def describe_verdicts(verdicts: Sequence[types_pb2.GuardVerdict]) -> list[str]:
    """One line per guard that did something (allow verdicts are omitted)."""
    lines = []
    for v in verdicts:
        if v.action in (types_pb2.GUARD_ACTION_ALLOW, types_pb2.GUARD_ACTION_UNSPECIFIED):
            continue
        action = types_pb2.GuardAction.Name(v.action).removeprefix("GUARD_ACTION_").lower()
        stage = types_pb2.GuardStage.Name(v.stage).removeprefix("GUARD_STAGE_").lower()
        mode = "monitor" if v.mode == types_pb2.GUARD_MODE_MONITOR else "enforce"
        found = ", ".join(sorted({f.type for f in v.findings})) or "-"
        lines.append(
            f"guard:  {v.guard} ({stage}) -> {action} [{mode}] found {found} "
            f"(policy {v.policy_version[:12]})"
        )
    return lines


def describe_route(route: types_pb2.RouteInfo, usage: types_pb2.Usage) -> list[str]:
    """Human lines: where the request ran, why, and what it cost."""
    lines = [
        f"route:  node={route.node_id} model={route.model} provider={route.provider} "
        f"policy={route.policy} attempts={route.attempts}"
        + (" cache=hit" if route.cache_hit else ""),
        f"reason: {route.reason}",
        f"usage:  {usage.input_tokens} prompt + {usage.output_tokens} completion tokens"
        + (f" ({usage.cached_input_tokens} cached)" if usage.cached_input_tokens else "")
        + f", cost ${usage.cost_usd:.8f}",
    ]
    if route.baseline_cost_usd:
        lines.append(f"        baseline would have cost ${route.baseline_cost_usd:.8f}")
    return lines

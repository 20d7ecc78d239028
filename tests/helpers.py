"""Small helpers for tests that talk to real servers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from mesh.router.ledger import LedgerRow
from mesh.v1 import inference_pb2, types_pb2

LEDGER_NOW = dt.datetime(2026, 5, 10, 12, 0, tzinfo=dt.UTC)


def user(text: str) -> types_pb2.ChatMessage:
    return types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=text)


def request(
    text: str = "What is the capital of France?",
    *,
    max_tokens: int = 16,
    temperature: float = 0.0,
    model: str = "",
    request_id: str = "",
) -> inference_pb2.GenerateRequest:
    return inference_pb2.GenerateRequest(
        messages=[user(text)],
        sampling=types_pb2.SamplingParams(max_tokens=max_tokens, temperature=temperature),
        routing=types_pb2.RoutingHints(model=model),
        request_id=request_id,
    )


def stream_request(
    text: str = "Count from one to twenty.", **kwargs: object
) -> inference_pb2.GenerateStreamRequest:
    return inference_pb2.GenerateStreamRequest.FromString(
        request(text, **kwargs).SerializeToString()  # type: ignore[arg-type]
    )


def assert_real_answer(reply: inference_pb2.GenerateResponse, *, node_id: str) -> None:
    """The capital-of-France answer from SmolLM2 with real usage, priced at 0.02/0.04 per M."""
    assert "Paris" in reply.text
    assert reply.finish_reason in (types_pb2.FINISH_REASON_STOP, types_pb2.FINISH_REASON_LENGTH)
    assert reply.usage.input_tokens > 5 and 0 < reply.usage.output_tokens <= 16
    expected = (reply.usage.input_tokens * 0.02 + reply.usage.output_tokens * 0.04) / 1e6
    assert abs(reply.usage.cost_usd - expected) < 1e-12
    assert reply.route.node_id == node_id and reply.route.provider == "self-hosted"
    assert reply.model == "smollm2-135m-instruct" and reply.request_id


async def health_status(channel: grpc.aio.Channel, service: str = "") -> str:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


REFLECTION_V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


async def reflection_reply(
    channel: grpc.aio.Channel,
    request: reflection_pb2.ServerReflectionRequest,
    *,
    method: str = REFLECTION_V1ALPHA,
) -> reflection_pb2.ServerReflectionResponse:
    """One reflection request and its answer, through v1alpha or (`REFLECTION_V1`) v1.

    grpcio-reflection ships no v1 classes; v1 is the same messages under another package
    name, so v1alpha's classes write and read its wire format.
    """
    info = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = [reply async for reply in info(iter([request]), timeout=5)]
    assert len(replies) == 1, replies
    return replies[0]  # type: ignore[no-any-return]


async def reflected_services(
    channel: grpc.aio.Channel, *, method: str = REFLECTION_V1ALPHA
) -> set[str]:
    """The service names a server lists through reflection (v1alpha unless `method` says v1)."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = await reflection_reply(channel, request, method=method)
    return {service.name for service in reply.list_services_response.service}


class LoopTicks:
    """How many times a task on the event loop got a turn while `ticking()` was open."""

    count = 0


@contextlib.asynccontextmanager
async def ticking(interval_s: float = 0.01) -> AsyncIterator[LoopTicks]:
    """Counts the event loop's turns meanwhile: a check that ran off the loop leaves many, one
    that held the loop (a regex keeping the GIL, say) leaves none."""
    ticks = LoopTicks()

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval_s)
            ticks.count += 1

    task = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        task.cancel()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll a condition (bounded); True once it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def ledger_row(
    i: int,
    tenant: str = "acme",
    model: str = "smollm2",
    cost: float = 0.001,
    base: float = 0.01,
    hit: bool = False,
    when: dt.datetime = LEDGER_NOW,
) -> LedgerRow:
    """Ledger row number `i` of a routed (or, with `hit`, cached) request on node n1."""
    return LedgerRow(
        f"r{i}",
        tenant,
        "n1",
        model,
        100,
        50,
        cost,
        base,
        hit,
        "cheapest",
        1,
        "pv1",
        created_at=when,
    )

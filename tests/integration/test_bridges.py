"""Bridge nodes against real peers.

The happy paths run the official `openai` and `anthropic` SDKs against a real vLLM
OpenAI-compatible server with SmolLM2 (both /v1/chat/completions and /v1/messages), directly
and through a real router. Provider failures come from the fault injector, a scripted HTTP
server; where a retry has to end in an answer, it forwards to the real server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.config import (
    BridgeConfig,
    BridgeLimits,
    GuardSettings,
    ModelPrice,
    RegistrySettings,
    RetryPolicy,
    RouterConfig,
    TelemetrySettings,
)
from mesh.contract.status import error_details
from mesh.router.app import RouterRuntime
from mesh.telemetry.setup import Telemetry, setup_telemetry
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.bridges.backend import BridgeBackend
from nodes.bridges.runtime import BridgeRuntime
from tests.fixtures.fault_injector import (
    Answer,
    FaultInjector,
    Forward,
    Hang,
    Reply,
    Stream,
    error_body,
    openai_chunk,
)
from tests.fixtures.openai_server import OpenAIServer
from tests.helpers import health_status, reflected_services, request, stream_request, wait_until
from tests.process import free_address, start_mesh

KEY = "sk-mesh-bridge-test-5e1f0c9a7d3b"
KEY_ENV = "MESH_TEST_BRIDGE_KEY"
PRICE = ModelPrice(input=0.15, output=0.60, cached_input=0.075)
QUESTION = "What is the capital of France?"
# Fast retries keep failure tests short; the policy itself is unit-tested.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(autouse=True)
def _bridge_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def _config(provider: str, base_url: str, **fields: Any) -> BridgeConfig:
    data: dict[str, Any] = {
        "id": f"bridge-{provider}",
        "provider": provider,
        "model": "smollm2-135m-instruct",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "context_window": 1024,
        "price": PRICE,
        "aliases": [f"via-{provider}"],
        "retry": FAST_RETRY,
        **fields,
    }
    return BridgeConfig.model_validate(data)


def _base_url(provider: str, root: str) -> str:
    return root if provider == "anthropic" else root + "/v1"


@asynccontextmanager
async def running_bridge(
    config: BridgeConfig, telemetry: Telemetry | None = None
) -> AsyncIterator[tuple[BridgeRuntime, inference_pb2_grpc.InferenceServiceStub]]:
    runtime = BridgeRuntime(config, health_interval_s=0.2, telemetry=telemetry)
    address = await runtime.start()
    channel = grpc.aio.insecure_channel(address)
    try:
        yield runtime, inference_pb2_grpc.InferenceServiceStub(channel)
    finally:
        await channel.close()
        await runtime.stop(grace_s=0.5)


def _expected_cost(usage: types_pb2.Usage) -> float:
    cached = usage.cached_input_tokens
    return (
        (usage.input_tokens - cached) * PRICE.input
        + cached * PRICE.cached_input_rate
        + usage.output_tokens * PRICE.output
    ) / 1e6


def _assert_real_usage(usage: types_pb2.Usage, max_tokens: int = 16) -> None:
    assert usage.input_tokens > 5 and 0 < usage.output_tokens <= max_tokens
    assert usage.cost_usd == pytest.approx(_expected_cost(usage), rel=1e-9)
    assert usage.cost_usd > 0


async def _collect_stream(
    stub: inference_pb2_grpc.InferenceServiceStub,
    req: inference_pb2.GenerateStreamRequest,
    deadline_s: float = 60,
    min_deltas: int = 2,
) -> tuple[str, inference_pb2.GenerationSummary]:
    deltas: list[str] = []
    summaries = []
    async for event in stub.GenerateStream(req, timeout=deadline_s):
        if event.HasField("delta"):
            assert not summaries, "a delta after the summary"
            deltas.append(event.delta.text)
        else:
            summaries.append(event.summary)
    assert len(summaries) == 1 and len(deltas) >= min_deltas
    return "".join(deltas), summaries[0]


def _with_system(system: str, text: str) -> inference_pb2.GenerateRequest:
    req = request(text)
    req.messages.insert(0, types_pb2.ChatMessage(role=types_pb2.ROLE_SYSTEM, content=system))
    return req


# --- against the real vLLM OpenAI-compatible server ---------------------------------------


@pytest.mark.parametrize("provider", ["openai-compatible", "openai", "anthropic"])
@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_unary_and_stream_against_the_real_server(
    openai_server: OpenAIServer, provider: str
) -> None:
    config = _config(provider, _base_url(provider, openai_server.base_url))
    async with running_bridge(config) as (_runtime, stub):
        reply = await stub.Generate(request(QUESTION), timeout=60)
        assert "Paris" in reply.text
        assert reply.finish_reason in (types_pb2.FINISH_REASON_STOP, types_pb2.FINISH_REASON_LENGTH)
        _assert_real_usage(reply.usage)
        assert reply.route.provider == provider and reply.route.node_id == config.id
        assert reply.route.attempts == 1 and reply.model == "smollm2-135m-instruct"

        text, summary = await _collect_stream(stub, stream_request(max_tokens=12))
        assert text.strip() and summary.finish_reason == types_pb2.FINISH_REASON_LENGTH
        _assert_real_usage(summary.usage, max_tokens=12)
        assert summary.usage.output_tokens == 12
        assert summary.route.provider == provider


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_a_bridge_node_serves_health_reflection_and_an_external_card(
    openai_server: OpenAIServer,
) -> None:
    config = _config("anthropic", openai_server.base_url)
    async with running_bridge(config) as (runtime, _stub):
        async with grpc.aio.insecure_channel(runtime.address) as channel:
            assert await health_status(channel) == "SERVING"
            assert "mesh.v1.InferenceService" in await reflected_services(channel)
            models = await inference_pb2_grpc.InferenceServiceStub(channel).ListModels(
                inference_pb2.ListModelsRequest(), timeout=5
            )
        (card,) = models.models
        assert card.kind == types_pb2.MODEL_KIND_EXTERNAL and card.provider == "anthropic"
        assert (card.input_price_per_mtok, card.output_price_per_mtok) == (0.15, 0.60)
        assert card.cached_input_price_per_mtok == 0.075 and card.context_window == 1024
        assert list(card.aliases) == ["via-anthropic"]
        assert models.load.max_inflight == config.limits.max_concurrent
        # The health probe (the provider's model list) ran against the real server.
        backend = runtime.backend
        assert isinstance(backend, BridgeBackend)
        assert await wait_until(lambda: backend.healthy is True)


@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic"])
@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_system_prompts_reach_the_provider_in_its_own_shape(
    openai_server: OpenAIServer, provider: str
) -> None:
    injector = FaultInjector(upstream=openai_server.base_url)
    await injector.start()
    try:
        config = _config(provider, _base_url(provider, injector.base_url))
        async with running_bridge(config) as (_runtime, stub):
            injector.play(Forward())
            system = "You are a geography teacher. Answer in one short sentence."
            reply = await stub.Generate(_with_system(system, QUESTION), timeout=60)
        assert "Paris" in reply.text
        _assert_real_usage(reply.usage)
        body = injector.received[-1].body
        if provider == "anthropic":
            assert injector.received[-1].path == "/v1/messages"
            assert body["system"] == system
            assert [m["role"] for m in body["messages"]] == ["user"]
        else:
            assert injector.received[-1].path == "/v1/chat/completions"
            assert body["messages"][0] == {"role": "system", "content": system}
            assert "system" not in body
    finally:
        await injector.stop()


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_both_bridges_through_a_real_router(openai_server: OpenAIServer) -> None:
    openai_config = _config("openai-compatible", openai_server.openai_base_url)
    anthropic_config = _config("anthropic", openai_server.base_url)
    async with (
        running_bridge(openai_config) as (openai_bridge, _),
        running_bridge(anthropic_config) as (anthropic_bridge, _),
    ):
        router = RouterRuntime(
            RouterConfig(listen="127.0.0.1:0", health_interval_s=0.2, guards=GuardSettings())
        )
        router.add_upstream(openai_config.id, openai_bridge.address)
        router.add_upstream(anthropic_config.id, anthropic_bridge.address)
        address = await router.start()
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = inference_pb2_grpc.InferenceServiceStub(channel)
                for config in (openai_config, anthropic_config):
                    req = request(QUESTION, model=config.aliases[0])
                    req.routing.allow_external = True
                    reply = await stub.Generate(req, timeout=60)
                    assert "Paris" in reply.text
                    assert reply.route.node_id == config.id
                    assert reply.route.provider == config.provider
                    _assert_real_usage(reply.usage)

                    sreq = stream_request(model=config.aliases[0], max_tokens=12)
                    sreq.routing.allow_external = True
                    # The router's guard hold-back window may merge deltas.
                    text, summary = await _collect_stream(stub, sreq, min_deltas=1)
                    assert text.strip() and summary.route.node_id == config.id
                    _assert_real_usage(summary.usage, max_tokens=12)
        finally:
            await router.stop(grace_s=0.5)


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_a_bridge_registers_with_a_router(openai_server: OpenAIServer) -> None:
    router = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            health_interval_s=0.2,
            guards=GuardSettings(enabled=False),
            registry=RegistrySettings(mode="open"),  # loopback, no token: registration by choice
        )
    )
    address = await router.start()
    try:
        config = _config(
            "openai-compatible",
            openai_server.openai_base_url,
            router_address=address,
            heartbeat_interval_s=0.2,
        )
        async with running_bridge(config):
            assert await wait_until(lambda: router.catalog.get(config.id) is not None)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = inference_pb2_grpc.InferenceServiceStub(channel)
                req = request(QUESTION, model="via-openai-compatible")
                req.routing.allow_external = True
                reply = await stub.Generate(req, timeout=60)
            assert "Paris" in reply.text and reply.route.node_id == config.id
    finally:
        await router.stop(grace_s=0.5)


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_retries_end_in_a_real_answer_and_are_counted(
    openai_server: OpenAIServer,
) -> None:
    injector = FaultInjector(upstream=openai_server.base_url)
    await injector.start()
    try:
        for provider in ("openai-compatible", "anthropic"):
            config = _config(provider, _base_url(provider, injector.base_url))
            async with running_bridge(config) as (_runtime, stub):
                injector.play(Reply(503), Reply(429, headers={"Retry-After": "0"}), Forward())
                reply = await stub.Generate(request(QUESTION), timeout=60)
                assert "Paris" in reply.text and reply.route.attempts == 3
                assert len(injector.received) == 3

                injector.play(Reply(502), Forward())
                text, summary = await _collect_stream(stub, stream_request(max_tokens=8))
                assert text and summary.route.attempts == 2 and len(injector.received) == 2
    finally:
        await injector.stop()


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_the_key_never_reaches_logs_spans_or_errors(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry = setup_telemetry(
        "bridge-key-test",
        TelemetrySettings(exporters=["memory"], prometheus_listen=None),
        install_global=False,
    )
    injector = FaultInjector(upstream=openai_server.base_url)
    await injector.start()
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    try:
        for provider in ("openai-compatible", "anthropic"):
            config = _config(provider, _base_url(provider, injector.base_url))
            async with running_bridge(config, telemetry) as (_runtime, stub):
                injector.play(Forward())
                reply = await stub.Generate(request(QUESTION), timeout=60)
                assert "Paris" in reply.text
                # A provider that echoes the key it was sent (as OpenAI's 401 body does).
                injector.play(
                    Reply(401, body=error_body(401, f"Incorrect API key provided: {KEY}"))
                )
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Generate(request(QUESTION), timeout=60)
                details = error_details(caught.value)
                assert details.code == "UNAUTHENTICATED" and details.reason == "UPSTREAM_AUTH"
                messages += [details.message, str(details.metadata), str(caught.value)]
            # The key did go out, so finding it nowhere else means something.
            sent = injector.received[-1].headers
            assert KEY in (sent.get("Authorization", "") + sent.get("x-api-key", ""))
        telemetry.force_flush()
        assert telemetry.memory_exporter is not None
        spans = telemetry.memory_exporter.get_finished_spans()
        assert spans
        span_text = " ".join(
            f"{s.name} {dict(s.attributes or {})} {s.status.description} {list(s.events)}"
            for s in spans
        )
        log_text = "\n".join(
            f"{r.getMessage()} {r.args} {r.exc_text or ''}" for r in caplog.records
        )
        assert caplog.records
        for text in (*messages, span_text, log_text):
            assert KEY not in text
    finally:
        await injector.stop()
        telemetry.shutdown()


@pytest.mark.vllm
@pytest.mark.model
@pytest.mark.timeout(600)
async def test_the_mesh_bridge_command(openai_server: OpenAIServer, tmp_path: Path) -> None:
    address = free_address()
    env = {
        **os.environ,
        KEY_ENV: KEY,
        "MESH_LOG_FORMAT": "text",
        "XDG_CACHE_HOME": str(tmp_path),  # its span store
    }
    async with start_mesh(
        "bridge",
        "--provider", "anthropic",
        "--model", "smollm2-135m-instruct",
        "--base-url", openai_server.base_url,
        "--api-key-env", KEY_ENV,
        "--listen", address,
        "--context-window", "1024",
        "--price-in", "0.15", "--price-out", "0.6", "--price-cached", "0.075",
        "--alias", "via-cli",
        env=env,
        log=tmp_path / "bridge.log",
    ) as process:  # fmt: skip
        await process.wait_for_output_async("ready on", timeout_s=120)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            reply = await stub.Generate(request(QUESTION, model="via-cli"), timeout=60)
            models = await stub.ListModels(inference_pb2.ListModelsRequest(), timeout=5)
        assert "Paris" in reply.text and reply.route.provider == "anthropic"
        _assert_real_usage(reply.usage)
        assert models.models[0].kind == types_pb2.MODEL_KIND_EXTERNAL
        code = await process.stop_async(grace_s=30)
    assert code == 0, process.tail()
    assert KEY not in process.output()


# --- provider failures from the fault injector ---------------------------------------------
@pytest.mark.parametrize(
    ("status", "headers", "code", "reason"),
    [
        (400, {}, "INVALID_ARGUMENT", "UPSTREAM_INVALID_REQUEST"),
        (401, {}, "UNAUTHENTICATED", "UPSTREAM_AUTH"),
        (403, {}, "PERMISSION_DENIED", "UPSTREAM_AUTH"),
        (404, {}, "NOT_FOUND", "UPSTREAM_NOT_FOUND"),
        (408, {}, "DEADLINE_EXCEEDED", "UPSTREAM_TIMEOUT"),
        (504, {}, "DEADLINE_EXCEEDED", "UPSTREAM_TIMEOUT"),
        (429, {"Retry-After": "7"}, "RESOURCE_EXHAUSTED", "UPSTREAM_RATE_LIMITED"),
        (500, {}, "UNAVAILABLE", "UPSTREAM_UNAVAILABLE"),
        (503, {}, "UNAVAILABLE", "UPSTREAM_UNAVAILABLE"),
    ],
)
@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic"])
async def test_provider_statuses_become_grpc_statuses(
    fault_injector: FaultInjector,
    provider: str,
    status: int,
    headers: dict[str, str],
    code: str,
    reason: str,
) -> None:
    # One attempt: retry behaviour is tested below; here only the mapping.
    config = _config(
        provider,
        _base_url(provider, fault_injector.base_url),
        retry=RetryPolicy(max_attempts=1),
    )
    async with running_bridge(config) as (_runtime, stub):
        for call in ("unary", "stream"):
            fault_injector.play(Reply(status, headers=headers))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if call == "unary":
                    await stub.Generate(request(), timeout=20)
                else:
                    await _collect_stream(stub, stream_request(), deadline_s=20)
            details = error_details(caught.value)
            assert (details.code, details.reason) == (code, reason), call
            assert details.metadata["provider"] == provider
            assert details.metadata["model"] == "smollm2-135m-instruct"
            assert details.metadata["http_status"] == str(status)
            assert details.metadata["attempts"] == "1"
            if status == 429:
                assert details.retry_after_s == 7.0
            assert len(fault_injector.received) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"error": "an HTML page would say this"},  # 200, but no choices
        {"choices": []},
        {"choices": [{"message": {"content": ["not", "text"]}, "finish_reason": "stop"}]},
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": -3}},
        ["a", "list"],
    ],
    ids=["no-choices", "empty-choices", "content-not-text", "negative-usage", "not-an-object"],
)
async def test_a_200_that_is_not_a_chat_completion_is_a_precise_error(
    fault_injector: FaultInjector, body: object
) -> None:
    """UNAVAILABLE / UPSTREAM_BAD_RESPONSE (retryable: a router may try another node), never
    INTERNAL with an AttributeError from deep inside a response model."""
    config = _config(
        "openai-compatible", fault_injector.base_url + "/v1", retry=RetryPolicy(max_attempts=1)
    )
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Reply(200, body=body))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(), timeout=20)
    details = error_details(caught.value)
    assert (details.code, details.reason) == ("UNAVAILABLE", "UPSTREAM_BAD_RESPONSE")
    assert details.metadata["provider"] == "openai-compatible"
    assert details.retryable  # RetryInfo on the status: the router falls back


async def test_the_request_body_is_the_chat_completions_wire_format(
    fault_injector: FaultInjector,
) -> None:
    """What an OpenAI-compatible server receives, unary and streamed: sampling as top-level
    fields (top_k too, for servers such as vLLM that take it), no SDK-only field."""
    config = _config("openai-compatible", fault_injector.base_url + "/v1")
    async with running_bridge(config) as (_runtime, stub):
        for call in ("unary", "stream"):
            fault_injector.play(Answer("fine"))
            req = request() if call == "unary" else stream_request()
            req.sampling.top_k = 5
            req.sampling.seed = 11
            if call == "unary":
                await stub.Generate(req, timeout=20)
            else:
                await _collect_stream(stub, req, deadline_s=20, min_deltas=1)
            body = fault_injector.received[-1].body
            assert body["top_k"] == 5 and body["seed"] == 11, call
            assert body["model"] == "smollm2-135m-instruct"
            assert "extra_body" not in body and "max_tokens" in body
            assert body.get("stream", False) is (call == "stream")
            if call == "stream":
                assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("after_output", [False, True], ids=["first-chunk", "mid-stream"])
async def test_a_stream_chunk_that_is_not_a_chat_chunk_is_a_precise_error(
    fault_injector: FaultInjector, after_output: bool
) -> None:
    """A broken chunk ends the stream with UNAVAILABLE / UPSTREAM_BAD_RESPONSE: before any
    text (the router may still fall back), or after the text already sent (never spliced)."""
    config = _config(
        "openai-compatible", fault_injector.base_url + "/v1", retry=RetryPolicy(max_attempts=1)
    )
    broken = {"choices": [{"delta": {"content": {"not": "text"}}, "finish_reason": None}]}
    events = (openai_chunk("Hello"), broken) if after_output else (broken,)
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Stream(events))
        deltas: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for event in stub.GenerateStream(stream_request(), timeout=20):
                if event.HasField("delta"):
                    deltas.append(event.delta.text)
    details = error_details(caught.value)
    assert (details.code, details.reason) == ("UNAVAILABLE", "UPSTREAM_BAD_RESPONSE")
    assert "".join(deltas) == ("Hello" if after_output else "")


async def test_connection_errors_are_retried_then_unavailable(
    fault_injector: FaultInjector,
) -> None:
    await fault_injector.stop()  # nothing listens on its port any more
    config = _config("openai-compatible", fault_injector.base_url + "/v1")
    async with running_bridge(config) as (_runtime, stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(), timeout=20)
    details = error_details(caught.value)
    assert (details.code, details.reason) == ("UNAVAILABLE", "UPSTREAM_UNAVAILABLE")
    assert details.metadata["attempts"] == "3" and details.metadata["provider"]


@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic"])
async def test_retries_stop_after_max_attempts(
    fault_injector: FaultInjector, provider: str
) -> None:
    config = _config(provider, _base_url(provider, fault_injector.base_url))
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Reply(503), Reply(500), Reply(529), Reply(503))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(), timeout=20)
        details = error_details(caught.value)
        assert details.code == "UNAVAILABLE" and details.metadata["attempts"] == "3"
        assert len(fault_injector.received) == 3

        fault_injector.play(Reply(400), Forward())  # a client error is never retried
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(), timeout=20)
        assert error_details(caught.value).code == "INVALID_ARGUMENT"
        assert len(fault_injector.received) == 1


async def test_no_retry_after_output_was_sent(fault_injector: FaultInjector) -> None:
    config = _config("openai-compatible", fault_injector.base_url + "/v1")
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Stream((openai_chunk("Hel"), openai_chunk("lo")), then="drop"))
        received: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for event in stub.GenerateStream(stream_request(), timeout=20):
                received.append(event.delta.text)
        assert "".join(received) == "Hello"
        assert error_details(caught.value).code == "UNAVAILABLE"
        assert len(fault_injector.received) == 1


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(
    fault_injector: FaultInjector,
) -> None:
    config = _config("anthropic", fault_injector.base_url)
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Reply(429, headers={"Retry-After": "30"}))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(), timeout=3)
        details = error_details(caught.value)
        assert (details.code, details.retry_after_s) == ("RESOURCE_EXHAUSTED", 30.0)
        assert len(fault_injector.received) == 1


@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic"])
async def test_client_cancel_closes_the_upstream_stream(
    fault_injector: FaultInjector, provider: str
) -> None:
    config = _config(provider, _base_url(provider, fault_injector.base_url))
    first = (
        openai_chunk("Hi")
        if provider != "anthropic"
        else {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hi"},
        }
    )
    events: tuple[Any, ...] = (first,)
    if provider == "anthropic":
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_fault",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 0},
            },
        }
        events = (start, first)
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Stream(events, then="hang"))
        call = stub.GenerateStream(stream_request(), timeout=30)
        event = await call.read()
        assert event.delta.text == "Hi"
        call.cancel()
        assert await wait_until(lambda: bool(fault_injector.disconnects), timeout_s=10)


@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic"])
@pytest.mark.parametrize("streaming", [False, True])
async def test_the_deadline_closes_the_upstream_request(
    fault_injector: FaultInjector, provider: str, streaming: bool
) -> None:
    config = _config(provider, _base_url(provider, fault_injector.base_url))
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Hang())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if streaming:
                await _collect_stream(stub, stream_request(), deadline_s=1.0)
            else:
                await stub.Generate(request(), timeout=1.0)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert await wait_until(lambda: bool(fault_injector.disconnects), timeout_s=10)
        assert len(fault_injector.received) == 1


async def test_rate_limits_refuse_before_the_provider_is_called(
    fault_injector: FaultInjector,
) -> None:
    config = _config(
        "openai-compatible",
        fault_injector.base_url + "/v1",
        limits=BridgeLimits(requests_per_minute=1),
    )
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Reply(400))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(request(), timeout=20)  # reached the provider (and failed)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(), timeout=20)
        details = error_details(caught.value)
        assert (details.code, details.reason) == ("RESOURCE_EXHAUSTED", "BRIDGE_RATE_LIMITED")
        assert details.metadata["limit"] == "requests_per_minute"
        assert details.metadata["provider"] == "openai-compatible"
        assert details.metadata["model"] == "smollm2-135m-instruct"
        assert details.retry_after_s is not None and 0 < details.retry_after_s <= 60
        assert len(fault_injector.received) == 1


async def test_tokens_per_minute(fault_injector: FaultInjector) -> None:
    config = _config(
        "anthropic", fault_injector.base_url, limits=BridgeLimits(tokens_per_minute=100)
    )
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Reply(400))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(request(max_tokens=80), timeout=20)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(max_tokens=80), timeout=20)
        details = error_details(caught.value)
        assert details.reason == "BRIDGE_RATE_LIMITED"
        assert details.metadata["limit"] == "tokens_per_minute"
        assert len(fault_injector.received) == 1


async def test_max_concurrent_requests(fault_injector: FaultInjector) -> None:
    config = _config(
        "openai-compatible",
        fault_injector.base_url + "/v1",
        limits=BridgeLimits(max_concurrent=1),
    )
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Hang())
        first = asyncio.ensure_future(stub.Generate(request(), timeout=30))
        assert await wait_until(lambda: len(fault_injector.received) == 1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request(), timeout=20)
        details = error_details(caught.value)
        assert (details.code, details.reason) == ("RESOURCE_EXHAUSTED", "OVERLOADED")
        assert details.retry_after_s is not None
        assert len(fault_injector.received) == 1
        first.cancel()
        assert await wait_until(lambda: bool(fault_injector.disconnects))


async def test_a_server_without_auth_gets_no_credentials(fault_injector: FaultInjector) -> None:
    config = _config("openai-compatible", fault_injector.base_url + "/v1", api_key_env=None)
    assert config.key_source == "none"
    async with running_bridge(config) as (_runtime, stub):
        fault_injector.play(Reply(400))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(request(), timeout=20)
    headers = {k.lower() for k in fault_injector.received[0].headers}
    assert "authorization" not in headers and "x-api-key" not in headers


async def test_a_missing_key_fails_at_start_naming_only_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV)
    runtime = BridgeRuntime(_config("openai", "http://127.0.0.1:9/v1"))
    with pytest.raises(ValueError, match=f"{KEY_ENV} is not set"):
        await runtime.start()
    await runtime.stop(grace_s=0)

"""A real node (transformers engine, real SmolLM2) through its gRPC API."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from mesh.contract.status import error_details
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.runtime import NodeRuntime
from tests.helpers import (
    assert_real_answer,
    health_status,
    reflected_services,
    request,
    stream_request,
    wait_until,
)

pytestmark = pytest.mark.model


@pytest.fixture
async def stub(hf_node: NodeRuntime) -> inference_pb2_grpc.InferenceServiceStub:
    channel = grpc.aio.insecure_channel(hf_node.address)
    yield inference_pb2_grpc.InferenceServiceStub(channel)
    await channel.close()


async def test_unary_answer_is_real(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    reply = await stub.Generate(request(max_tokens=16), timeout=60)
    assert_real_answer(reply, node_id="hf-node")


async def test_stream_yields_deltas_then_one_summary(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    events = [e async for e in stub.GenerateStream(stream_request(max_tokens=24), timeout=60)]
    deltas = [e.delta.text for e in events[:-1]]
    assert len(deltas) > 3 and all(e.HasField("delta") for e in events[:-1])
    assert events[-1].HasField("summary")
    summary = events[-1].summary
    assert summary.usage.output_tokens >= len([d for d in deltas if d])
    # Same prompt unary at temperature 0 gives the same text: streaming splits, never changes.
    unary = await stub.Generate(request("Count from one to twenty.", max_tokens=24), timeout=60)
    assert "".join(deltas) == unary.text


async def test_stop_strings_end_the_answer(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    req = request("Name three colors.", max_tokens=24)
    full = await stub.Generate(req, timeout=60)
    words = full.text.split()
    assert len(words) >= 4, full.text
    stop = words[2]  # greedy decoding repeats itself: the same text up to this word
    req.sampling.stop.append(stop)
    cut = await stub.Generate(req, timeout=60)
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == types_pb2.FINISH_REASON_STOP


async def test_list_models_health_and_reflection(hf_node: NodeRuntime) -> None:
    async with grpc.aio.insecure_channel(hf_node.address) as channel:
        reply = await inference_pb2_grpc.InferenceServiceStub(channel).ListModels(
            inference_pb2.ListModelsRequest(), timeout=5
        )
        card = reply.models[0]
        assert (
            card.model_id == "smollm2-135m-instruct"
            and card.kind == types_pb2.MODEL_KIND_SELF_HOSTED
        )
        assert card.context_window == 8192 and card.input_price_per_mtok == 0.02
        assert await health_status(channel) == "SERVING"
        assert await health_status(channel, "mesh.v1.InferenceService") == "SERVING"
        assert "mesh.v1.InferenceService" in await reflected_services(channel)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.sampling.__setattr__("temperature", -0.5), "sampling.temperature"),
        (lambda r: r.sampling.__setattr__("top_p", 1.5), "sampling.top_p"),
        (lambda r: r.sampling.__setattr__("max_tokens", 0), "sampling.max_tokens"),
        (lambda r: r.ClearField("messages"), "messages"),
    ],
)
async def test_bad_input_is_invalid_argument_with_field_violations(
    stub: inference_pb2_grpc.InferenceServiceStub, mutate: object, field: str
) -> None:
    req = request()
    mutate(req)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(info.value)
    assert field in [v.field for v in details.violations]
    assert "Traceback" not in (info.value.details() or "")


async def test_prompt_over_the_context_window(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request("word " * 9000), timeout=30)
    details = error_details(info.value)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "CONTEXT_WINDOW_EXCEEDED"
    assert details.metadata["context_window"] == "8192"
    assert int(details.metadata["prompt_tokens"]) > 8192
    assert "8192" in details.message


async def test_pinning_another_model_is_not_found(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request(model="gpt-9"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(info.value).reason == "MODEL_NOT_FOUND"


async def test_deadline_stops_generation(
    hf_node: NodeRuntime, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(
            request("Write a long story about a dragon.", max_tokens=400), timeout=0.5
        )
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await wait_until(lambda: hf_node.backend.load().running == 0, timeout_s=10)
    # and the node still answers afterwards
    assert (await stub.Generate(request(max_tokens=4), timeout=60)).text


async def test_client_cancel_stops_generation(
    hf_node: NodeRuntime, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    call = stub.GenerateStream(
        stream_request("Write a long story about a dragon.", max_tokens=400), timeout=60
    )
    async for event in call:
        assert event.HasField("delta")
        break  # one token is enough
    assert hf_node.backend.load().running == 1
    call.cancel()
    assert await wait_until(lambda: hf_node.backend.load().running == 0, timeout_s=10)
    assert hf_node.servicer.admission.inflight == 0


async def test_concurrent_requests_queue_and_all_complete(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    prompts = ["Name a color.", "Name a fruit.", "Name an animal."]
    replies = await asyncio.gather(
        *(stub.Generate(request(p, max_tokens=8), timeout=120) for p in prompts)
    )
    singles = [await stub.Generate(request(p, max_tokens=8), timeout=60) for p in prompts]
    assert [r.text for r in replies] == [s.text for s in singles]

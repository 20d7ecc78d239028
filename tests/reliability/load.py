"""Load for the reliability scenarios: unique prompts, streams checked chunk by chunk against
what the fake engine produced, unary calls, and the suite's duration knobs.

The knobs are environment variables so that `make soak` runs the same tests longer:
MESH_SOAK_S (soak seconds, 60 in `make test`, 600 in `make soak`) and MESH_FUZZ_EXAMPLES
(hypothesis examples per RPC and kind).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.engines.base import GenerationInput, Message, Sampling, TextChunk
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.fixtures.recording_engine import RecordingFakeEngine
from tests.reliability.scenarios import Scenario

SOAK_S = float(os.environ.get("MESH_SOAK_S", "60"))
FUZZ_EXAMPLES = int(os.environ.get("MESH_FUZZ_EXAMPLES", "20"))

# Words the PII and secrets guards leave alone: no digits runs, no @, nothing key-like. A stream's
# prompt is a rotation of them, so a chunk out of place or twice changes the text.
_WORDS = (
    "apple birch cedar delta ember fjord grove harbor island juniper kestrel lagoon meadow "
    "nectar orchard pebble quartz river summit tundra upland valley willow yarrow zephyr "
    "amber basil clover dune echo fern glade heath iris jade kelp lichen moss nutmeg olive "
    "poppy quill reed sage thyme umber violet wheat xenon yew zinnia"
)
VOCABULARY = tuple(_WORDS.split())
ANSWER_WORDS = 40  # words per fake answer: one chunk each


def prompt(worker: int, turn: int, words: int = ANSWER_WORDS) -> str:
    """A prompt no other call uses, whose last `words` words the fake engine echoes back."""
    start = (worker * 7 + turn) % len(VOCABULARY)
    body = [VOCABULARY[(start + k) % len(VOCABULARY)] for k in range(words)]
    return f"worker w{worker} turn t{turn} says " + " ".join(body)


def soak_router(nodes: Sequence[NodeRuntime]) -> dict[str, Any]:
    """The router section of a soak: the shipped guard policy, the exact cache (bounded), no
    embedding, static upstreams - as an operator runs a lean router."""
    return {
        "upstreams": [{"id": n.config.id, "address": n.address} for n in nodes],
        "guards": {"watch": False},  # the shipped default policy
        "cache": {"semantic": False, "max_entries": 256},
        "routing": {"estimator": {"embeddings": False}},
        "registry": {"mode": "off"},
    }


def generate_request(text: str, max_tokens: int = 64) -> inference_pb2.GenerateRequest:
    return inference_pb2.GenerateRequest(
        messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=text)],
        sampling=types_pb2.SamplingParams(max_tokens=max_tokens),
    )


def stream_request(text: str, max_tokens: int = 64) -> inference_pb2.GenerateStreamRequest:
    return inference_pb2.GenerateStreamRequest(
        messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=text)],
        sampling=types_pb2.SamplingParams(max_tokens=max_tokens),
    )


@dataclass
class Answered:
    """What a client received on one call (a stream's deltas joined)."""

    text: str
    summary: inference_pb2.GenerationSummary | inference_pb2.GenerateResponse | None
    first_s: float  # time to the first delta (a unary call: to the answer)
    total_s: float


async def stream_once(
    stub: inference_pb2_grpc.InferenceServiceStub,
    text: str,
    *,
    timeout_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Answered:
    """One GenerateStream call, its deltas joined; raises the call's AioRpcError."""
    start = time.monotonic()
    first = 0.0
    pieces: list[str] = []
    summary = None
    call = stub.GenerateStream(stream_request(text), timeout=timeout_s, metadata=metadata)
    async for event in call:
        if event.HasField("delta"):
            assert summary is None, "a delta after the summary"
            if not pieces:
                first = time.monotonic() - start
            pieces.append(event.delta.text)
        else:
            assert summary is None, "a second summary"
            summary = event.summary
    return Answered("".join(pieces), summary, first, time.monotonic() - start)


async def generate_once(
    stub: inference_pb2_grpc.InferenceServiceStub,
    text: str,
    *,
    timeout_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Answered:
    """One Generate call; raises the call's AioRpcError."""
    start = time.monotonic()
    reply = await stub.Generate(generate_request(text), timeout=timeout_s, metadata=metadata)
    took = time.monotonic() - start
    return Answered(reply.text, reply, took, took)


async def fake_answer(text: str, words: int = ANSWER_WORDS) -> str:
    """What FakeEngine (same script) answers to `text`: for nodes in another process, whose
    generations a test cannot record (the engine is deterministic)."""
    engine = FakeEngine()
    engine.script.words_per_answer = words
    request = GenerationInput(
        request_id="expected", messages=[Message("user", text)], sampling=Sampling(max_tokens=64)
    )
    return "".join([c.text async for c in engine.generate(request) if isinstance(c, TextChunk)])


Expected = Callable[[str], Awaitable[list[str]]]  # the texts the engines produced for a prompt


def recorded(engines: Sequence[RecordingFakeEngine]) -> Expected:
    """What in-process recording engines produced (each prompt should be generated once)."""

    async def produced(text: str) -> list[str]:
        out = [t for engine in engines for t in engine.produced.pop(text, [])]
        return out

    return produced


def deterministic(words: int = ANSWER_WORDS) -> Expected:
    """FakeEngine's answer, for nodes in other processes: any node gives the same text."""

    async def produced(text: str) -> list[str]:
        return [await fake_answer(text, words)]

    return produced


def check(got: Answered, produced: list[str]) -> str | None:
    """Why a completed call is wrong, or None: its text must be exactly the engine's, once."""
    if got.summary is None:
        return "no summary"
    if len(produced) != 1:
        return f"the engines produced this prompt {len(produced)} times"
    if got.text != produced[0]:
        return f"text differs: got {got.text[:80]!r}..., engine produced {produced[0][:80]!r}..."
    return None


def never(err: grpc.aio.AioRpcError, started_at: float, streaming: bool) -> bool:
    return False


@dataclass
class Load:
    """Clients calling back to back with unique prompts until told to stop: `streams` of them
    on GenerateStream, `unary` on Generate. Each answer is checked against `expected`."""

    stub: inference_pb2_grpc.InferenceServiceStub
    expected: Expected
    scenario: Scenario
    streams: int = 32
    unary: int = 0
    timeout_s: float = 30.0
    metadata: tuple[tuple[str, str], ...] = ()
    # A failed call the scenario expects (a stream cut by a killed node):
    # (error, its start on the monotonic clock, whether it streamed) -> True
    expected_failure: Callable[[grpc.aio.AioRpcError, float, bool], bool] = never
    completed: int = 0
    fell_back: int = 0  # answered after a failed attempt on another node
    problems: list[str] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)  # start times of the calls answered
    request_ids: list[str] = field(default_factory=list)  # of the calls answered
    pause_after_failure_s: float = 0.05  # a client that failed waits a little, as real ones do
    failures: list[tuple[float, grpc.aio.AioRpcError]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _worker(self, worker: int, streaming: bool) -> None:
        call = stream_once if streaming else generate_once
        turn = 0
        while not self._stop.is_set():
            text = prompt(worker, turn)
            turn += 1
            start = time.monotonic()
            try:
                got = await call(self.stub, text, timeout_s=self.timeout_s, metadata=self.metadata)
            except grpc.aio.AioRpcError as err:
                await self.expected(text)  # forget whatever was recorded
                expected = self.expected_failure(err, start, streaming)
                self.failures.append((start, err))
                self.scenario.record(time.monotonic() - start, ok=False, expected=expected)
                if not expected:
                    self.problems.append(f"{text[:24]}: {err.code().name} {err.details()}")
                await asyncio.sleep(self.pause_after_failure_s)
                continue
            why = check(got, await self.expected(text))
            self.scenario.record(got.total_s, ok=why is None)
            self.first_s.append(got.first_s)
            if why is None:
                self.completed += 1
                self.answered.append(start)
                assert got.summary is not None
                self.request_ids.append(got.summary.request_id)
                self.fell_back += got.summary.route.attempts > 1
            else:
                self.problems.append(f"{text[:24]}: {why}")

    def start(self) -> asyncio.Task[None]:
        """Run until `stop()`; the task ends once the calls in flight have."""
        workers = [(w, True) for w in range(self.streams)]
        workers += [(self.streams + w, False) for w in range(self.unary)]

        async def run() -> None:
            await asyncio.gather(*(self._worker(w, streaming) for w, streaming in workers))

        return asyncio.create_task(run())

    def stop(self) -> None:
        self._stop.set()

    async def run_for(self, seconds: float) -> None:
        """Run for `seconds`, then let the calls in flight finish."""
        task = self.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.stop()
            await task


async def abandoning_callers(
    callers: int, seconds: float, scenario: Scenario, abandon: Callable[[str], Awaitable[bool]]
) -> int:
    """`callers` clients, each sending `abandon(prompt)` back to back with prompts no other call
    uses, for `seconds`; how many calls were abandoned as meant (`abandon` returned True)."""
    stop = time.monotonic() + seconds
    abandoned = 0

    async def caller(worker: int) -> None:
        nonlocal abandoned
        turn = 0
        while time.monotonic() < stop:
            started = time.monotonic()
            meant = await abandon(prompt(worker, turn))
            scenario.record(time.monotonic() - started, ok=meant)
            abandoned += meant
            turn += 1

    await asyncio.gather(*(caller(w) for w in range(callers)))
    return abandoned


async def settled_inflight(nodes: Sequence[NodeRuntime], within_s: float = 10.0) -> list[int]:
    """Each node's requests in flight, once they reach 0 or `within_s` has passed."""
    deadline = time.monotonic() + within_s
    while True:
        counts = [n.servicer.admission.inflight for n in nodes]
        if not any(counts) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.05)

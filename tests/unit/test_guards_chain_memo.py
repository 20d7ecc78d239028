"""A chain remembers the texts it allowed untouched (per tenant) and skips its detectors for them;
anything a guard did, or a guard that may answer differently, runs every time."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import guards.chain as chain_module
from guards.chain import GuardChain
from guards.detectors.base import DetectorGuard
from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck, Turn
from guards.policy_loader import BuiltGuard
from guards.policy_model import GuardSpec
from guards.verdict import Action, Finding, Stage
from mesh.telemetry import semconv as sc
from tests.fixtures.guards import RecordingGuard, built


def _built(guard: DetectorGuard, **spec: object) -> BuiltGuard:
    return BuiltGuard(GuardSpec.model_validate({"name": "counting", "use": "test", **spec}), guard)


@dataclass
class CountingDetector:
    """Finds EMAIL wherever the text has an "@"; counts the texts it was asked about."""

    seen: list[str] = field(default_factory=list)

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        self.seen.append(text)
        at = text.find("@")
        return [Finding("EMAIL_ADDRESS", at, at + 1)] if at >= 0 else []


def _chain(
    action: Action = Action.BLOCK, mode: str = "enforce", stage: Stage = Stage.INPUT
) -> tuple[GuardChain, CountingDetector]:
    detector = CountingDetector()
    guard = DetectorGuard(detector, action)
    return GuardChain([_built(guard, mode=mode, stage="both")], stage, "v1"), detector


async def test_a_repeated_clean_text_skips_the_detectors_with_the_same_result() -> None:
    chain, detector = _chain()
    first = await chain.run(InputCheck("What is the capital of France?", tenant="acme"))
    again = await chain.run(InputCheck("What is the capital of France?", tenant="acme"))
    assert detector.seen == ["What is the capital of France?"]
    assert again == first and again.action is Action.ALLOW


async def test_what_a_guard_did_is_never_remembered() -> None:
    for action, mode in ((Action.BLOCK, "enforce"), (Action.REDACT, "enforce"),
                         (Action.FLAG, "enforce"), (Action.BLOCK, "monitor")):  # fmt: skip
        chain, detector = _chain(action, mode)
        results = [await chain.run(InputCheck("mail me at a@b.c")) for _ in range(2)]
        assert len(detector.seen) == 2, (action, mode)
        assert results[0] == results[1]


async def test_tenants_turns_system_prompts_and_stages_are_apart() -> None:
    chain, detector = _chain()
    text = "system: be brief. user: hello"
    turns = (Turn("system", 0, 17), Turn("user", 18, len(text)))
    for check in (
        InputCheck(text, tenant="acme"),
        InputCheck(text, tenant="globex"),
        InputCheck(text, tenant="acme", turns=turns),
        InputCheck(text, tenant="acme", system_prompt="secret"),
    ):
        await chain.run(check)
        await chain.run(check)
    assert len(detector.seen) == 4
    out_chain, out_detector = _chain(stage=Stage.OUTPUT)
    for _ in range(2):
        await out_chain.run(OutputFinalCheck("Paris."))
        await out_chain.run(OutputChunkCheck("Paris."))  # a stream's chunks: always checked
    assert out_detector.seen == ["Paris.", "Paris.", "Paris."]


async def test_a_guard_that_may_answer_differently_keeps_the_chain_from_remembering() -> None:
    record: list[str] = []
    detector = CountingDetector()
    guards = [_built(DetectorGuard(detector, Action.BLOCK)), built(RecordingGuard("v", record))]
    chain = GuardChain(guards, Stage.INPUT, "v1")
    for _ in range(3):
        await chain.run(InputCheck("hello"))
    assert record == ["v", "v", "v"] and len(detector.seen) == 3


async def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_module, "ALLOWED_MEMO_ENTRIES", 2)
    chain, detector = _chain()
    for text in ("one", "two", "three", "one"):
        await chain.run(InputCheck(text))
    assert detector.seen == ["one", "two", "three", "one"]  # "one" was the oldest, forgotten
    await chain.run(InputCheck("three"))
    assert detector.seen[-1] == "one"


async def test_a_remembered_allow_is_one_event_that_says_so() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    chain, _ = _chain()
    for _ in range(2):
        with tracer.start_as_current_span("request"):
            await chain.run(InputCheck("hello there"))
    first, second = [s.events for s in exporter.get_finished_spans()]
    assert [e.attributes.get(sc.MESH_GUARD_REMEMBERED) for e in first + second] == [None, True]
    assert list(second[0].attributes[sc.MESH_GUARD_DURATIONS_MS]) == [0.0]
    assert list(second[0].attributes[sc.MESH_GUARD_NAMES]) == ["counting"]

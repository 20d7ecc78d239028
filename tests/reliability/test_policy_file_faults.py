"""Faults: the watched guard policy file is replaced by broken ones while the router serves load.

A real router watches its `guards.policy_file` (router.guards.watch) in front of a node on
FakeEngine (a deterministic test engine, named as such). While clients stream and call, the file
becomes, in turn: text that is not YAML, bytes that are not UTF-8, a policy naming a guard that
does not exist, an empty file (what a non-atomic save leaves for a moment), and no file at all.
After each, the active policy must still be the first one and every call must answer exactly.
Then a valid new policy is written: the watcher, still watching, must apply it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest

from guards.policy_store import DEFAULT_POLICY_PATH
from mesh.config import (
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RouterConfig,
    RoutingSettings,
)
from mesh.contract.status import error_details
from mesh.router.app import RouterRuntime
from mesh.v1 import inference_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import wait_until
from tests.reliability.load import ANSWER_WORDS, Load, deterministic, generate_request
from tests.reliability.scenarios import ScenarioTable

pytestmark = pytest.mark.timeout(120)

WATCH_WAIT_S = 10.0  # the watcher polls once a second
STRICT_LIMIT = """
  - name: strict_limit
    use: token_limit
    stage: input
    action: block
    params:
      max_tokens: 5
"""

BROKEN: list[tuple[str, Callable[[Path], None]]] = [
    ("not YAML", lambda p: _replace(p, b"guards: [\n  - name: x\n    use: [")),
    ("not UTF-8", lambda p: _replace(p, b"guards: []\n# \xff\xfe\xfd\n")),
    (
        "an unknown guard",
        lambda p: _replace(
            p, b"guards:\n  - {name: g, use: no_such_guard, stage: input, action: block}\n"
        ),
    ),
    ("empty (a save in progress)", lambda p: _truncate(p)),
    ("removed", lambda p: p.unlink()),
]


def _truncate(path: Path) -> None:
    """Empty the file in place, as an editor's non-atomic save does before it writes."""
    path.write_bytes(b"")


def _replace(path: Path, content: bytes) -> None:
    """Write `content` beside `path`, then rename it over `path` (what careful tools do)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


async def test_broken_policy_files_keep_the_active_policy_and_the_next_valid_one_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, scenarios: ScenarioTable
) -> None:
    caplog.set_level(logging.INFO, logger="guards.policy_store")
    scenario = scenarios("fault: broken policy files during load")
    policy_file = tmp_path / "policy.yaml"
    default_text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    policy_file.write_text(default_text, encoding="utf-8")
    engine = FakeEngine()
    engine.script.words_per_answer = ANSWER_WORDS
    node = NodeRuntime(NodeConfig(id="n1", engine="fake", model="fake-model"), engine)
    await node.start()
    router = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            guards=GuardSettings(
                policy_file=str(policy_file),
                watch=True,
                audit_url=f"sqlite+aiosqlite:///{tmp_path}/audit.db",
            ),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(enabled=False),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
        )
    )
    router.add_upstream("n1", node.address)
    await router.start()
    store = router.policy_store
    assert store is not None
    first = store.version

    def judged() -> int:
        """Log lines in which the watcher rejected a change (or installed one)."""
        return sum(
            "policy file" in r.getMessage() or "installed from" in r.getMessage()
            for r in caplog.records
        )

    try:
        async with grpc.aio.insecure_channel(router.address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            load = Load(stub, deterministic(), scenario, streams=4, unary=4, timeout_s=20)
            task = load.start()
            kept: dict[str, str] = {}
            try:
                for what, write in BROKEN:
                    before = judged()
                    write(policy_file)

                    def answered(before: int = before) -> bool:
                        return judged() > before or store.version != first

                    seen = await wait_until(answered, WATCH_WAIT_S)
                    kept[what] = (
                        "no answer from the watcher (stopped watching?)"
                        if not seen
                        else "kept"
                        if store.version == first
                        else f"replaced by {store.version}"
                    )
            finally:
                load.stop()
                await asyncio.wait_for(task, 30)
            scenario.figure(
                f"{load.completed} calls answered exactly across {len(BROKEN)} broken files; "
                + "; ".join(f"{what}: {outcome}" for what, outcome in kept.items())
            )
            assert not load.problems, load.problems[:10]
            assert kept == {what: "kept" for what, _ in BROKEN}

            # The watcher is still watching: a valid new policy applies.
            _replace(policy_file, (default_text + STRICT_LIMIT).encode())
            assert await wait_until(lambda: store.version != first, WATCH_WAIT_S)
            with pytest.raises(grpc.aio.AioRpcError) as blocked:
                await stub.Generate(generate_request("one two three four five six"), timeout=20)
            assert blocked.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_details(blocked.value).metadata["guards"] == "strict_limit"
    finally:
        await router.stop(0)
        await node.stop(0)

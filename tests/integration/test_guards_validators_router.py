"""guardrails-ai validators and hostile policy files through a real router (grpc.aio on
loopback) in front of a node on the fake engine (the mesh is under test, not a model).

- Real guardrails_ai RegexMatch and SecretsPresent validators block and fix requests end to
  end, with guardrails' telemetry off.
- A validator that raises on every call, under `on_error: open`, passes the text flagged
  GUARD_ERROR in the response's verdicts and in the audit log (it was a silent allow).
- The router's policy-file watcher lives through an anchor bomb, a non-UTF-8 file, a nesting
  bomb and a disallowed `use`, and applies the next valid file, while health keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest

from guards.policy_loader import LoadRules, load_policy
from guards.policy_store import PolicyStore
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
from mesh.v1 import inference_pb2, inference_pb2_grpc, policy_pb2, policy_pb2_grpc, types_pb2
from nodes.runtime import NodeRuntime
from tests.fixtures.guards import ADMIN_KEY, guarded_router
from tests.helpers import health_status, wait_until

pytest.importorskip("guardrails", reason="the `guardrails` extra is not installed")

RULES = LoadRules(validator_modules=("guardrails_ai.*", "tests.fixtures.validators"))
POLICY = """
guards:
  - name: ticket_format
    use: guardrails_ai.regex_match:RegexMatch
    params: {regex: "TICKET-[0-9]+", match_type: search}
    action: block
    timeout_ms: 5000
  - name: secrets_gr
    use: guardrails_ai.secrets_present:SecretsPresent
    action: redact
    timeout_ms: 5000
  - name: flaky_output
    use: tests.fixtures.validators:FailingValidatorForTests
    stage: output
    on_error: open
    timeout_ms: 5000
"""
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[tuple[grpc.aio.Channel, NodeRuntime]]:
    node = NodeRuntime(NodeConfig(id="validators-node", engine="fake"))
    node.backend.script.words_per_answer = 40
    await node.start()
    store = PolicyStore(load_policy(POLICY, "validators.yaml", RULES), rules=RULES)
    try:
        async with guarded_router(node, store, tmp_path) as channel:
            yield channel, node
    finally:
        await node.stop(0.5)


def request(text: str) -> inference_pb2.GenerateRequest:
    return inference_pb2.GenerateRequest(
        messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=text)],
        request_id="validators-1",
    )


async def test_regex_match_blocks_a_request_before_any_node(mesh: tuple) -> None:
    channel, node = mesh
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request("no ticket number in this one"))
    details = error_details(info.value)
    assert (details.code, details.reason) == ("PERMISSION_DENIED", "GUARD_BLOCKED")
    assert details.metadata["guards"] == "ticket_format"
    assert node.backend.completed == 0


async def test_secrets_present_fixes_a_request_and_a_failing_validator_is_flagged(
    mesh: tuple,
) -> None:
    channel, node = mesh
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    reply = await stub.Generate(request(f"TICKET-9: creds aws_secret_access_key = '{SECRET}'"))
    # The fake engine echoes the prompt it was sent: the node saw only the fixed text.
    assert SECRET not in reply.text and "[SECRETSPRESENT]" in reply.text
    assert node.backend.completed == 1
    verdicts = {v.guard: v for v in reply.guard_verdicts}
    assert verdicts["secrets_gr"].action == types_pb2.GUARD_ACTION_REDACT
    flaky = verdicts["flaky_output"]
    assert flaky.action == types_pb2.GUARD_ACTION_FLAG  # an error, not an allow
    assert [f.type for f in flaky.findings] == ["GUARD_ERROR"]
    assert flaky.error_type == "RuntimeError"  # why it could not decide
    assert verdicts["secrets_gr"].error_type == ""

    admin = policy_pb2_grpc.PolicyServiceStub(channel)  # type: ignore[no-untyped-call]

    async def audited() -> dict[str, policy_pb2.GuardDecision]:
        page = await admin.ListGuardDecisions(
            policy_pb2.ListGuardDecisionsRequest(), metadata=(("x-admin-key", ADMIN_KEY),)
        )
        return {d.verdict.guard: d for d in page.decisions}

    rows: dict[str, policy_pb2.GuardDecision] = {}

    async def both_audited() -> bool:
        rows.update(await audited())
        return {"secrets_gr", "flaky_output"} <= set(rows)

    for _ in range(100):
        if await both_audited():
            break
        await asyncio.sleep(0.05)
    assert rows["flaky_output"].verdict.action == types_pb2.GUARD_ACTION_FLAG
    assert [f.type for f in rows["flaky_output"].verdict.findings] == ["GUARD_ERROR"]
    assert rows["flaky_output"].verdict.error_type == "RuntimeError"
    assert rows["secrets_gr"].verdict.action == types_pb2.GUARD_ACTION_REDACT

    from guardrails.settings import settings  # type: ignore[import-untyped]

    assert settings.rc.enable_metrics is False and settings.rc.use_remote_inferencing is False


# --- the router's policy-file watcher ---------------------------------------------------------
GOOD = "guards:\n  - name: pii\n    use: pii\n    action: redact\n"
GOOD_2 = GOOD.replace("redact", "flag")
ANCHOR_BOMB = (
    "guards:\n  - name: x\n    use: pii\n    params:\n"
    '      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"      {c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


async def test_the_router_watcher_survives_hostile_files_and_health_keeps_answering(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(GOOD, encoding="utf-8")
    config = RouterConfig(
        listen="127.0.0.1:0",
        guards=GuardSettings(
            policy_file=str(policy_file),
            watch=True,
            audit_url=f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
        ),
        cache=CacheSettings(enabled=False),
        ledger=LedgerSettings(enabled=False),
        routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
    )
    caplog.set_level(logging.ERROR, logger="guards.policy_store")
    router = RouterRuntime(config)
    await router.start()
    store = router.policy_store
    assert store is not None
    first = store.version
    health: list[str] = []
    stop = asyncio.Event()

    async def probe_health(channel: grpc.aio.Channel) -> None:
        while not stop.is_set():
            health.append(await health_status(channel))  # each with a 5 s deadline
            await asyncio.sleep(0.05)

    async def rejections(count: int) -> bool:
        return await wait_until(
            lambda: sum("keeping" in r.getMessage() for r in caplog.records) >= count, 30
        )

    try:
        async with grpc.aio.insecure_channel(router.address) as channel:
            prober = asyncio.create_task(probe_health(channel))
            hostile = [
                ANCHOR_BOMB.encode(),  # 9 ** 9 strings once expanded
                b"guards:\n  - name: caf\xe9\n    use: pii\n",  # not UTF-8
                ("guards: " + "[" * 5000 + "]" * 5000).encode(),
                b"guards:\n  - name: x\n    use: 'logging:basicConfig'\n",
            ]
            await asyncio.sleep(1.2)  # the watcher has read the file's first mtime
            for n, content in enumerate(hostile, 1):
                policy_file.write_bytes(content)
                assert await rejections(n), f"file {n} was never rejected"
                assert store.version == first
            policy_file.write_text(GOOD_2, encoding="utf-8")
            assert await wait_until(lambda: store.version != first, 30)
            assert store.version == load_policy(GOOD_2).version
            stop.set()
            await prober  # raises if a health check missed its deadline
    finally:
        stop.set()
        await router.stop(0.5)
    assert health and set(health) == {"SERVING"}

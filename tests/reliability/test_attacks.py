"""Attacks of issue 14 as regression scenarios, each run while tenants' calls stream through.

The attacks themselves are tested one by one in tests/integration/test_registry_security.py
(registry hijack, card flood) and tests/integration/test_router_big_prompts.py (big-prompt stall);
these scenarios reuse their routers, nodes and attack messages and add what those do not show:
the tenants' own streams, checked chunk by chunk, while the attack runs. Nodes run FakeEngine (a
deterministic test engine, named as such).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import cast

import grpc
import grpc.aio
import pytest

import tests.integration.test_registry_security as registry_attacks
import tests.integration.test_router_big_prompts as big_prompts
from mesh.config import RegistrySettings
from mesh.contract.node_token import NODE_TOKEN_HEADER
from mesh.contract.status import error_details
from mesh.v1 import inference_pb2_grpc, registry_pb2
from tests.helpers import request
from tests.reliability.load import Load, deterministic
from tests.reliability.scenarios import Scenario, ScenarioTable

pytestmark = pytest.mark.timeout(180)

FAKE_WORDS = 8  # the default FakeEngine script of the reused nodes
TENANT = (("x-api-key", registry_attacks.TENANT_KEYS["acme"]),)


async def _refused(scenario: Scenario, call: object, expected: tuple[grpc.StatusCode, str]) -> str:
    """Run one attack call; '' when it was refused as `expected`, else what happened."""
    start = time.monotonic()
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        got = (err.code(), error_details(err).reason)
        scenario.record(time.monotonic() - start, ok=False, expected=got == expected)
        return "" if got == expected else f"refused as {got}, expected {expected}"
    scenario.record(time.monotonic() - start, ok=False)
    return "accepted"


async def test_registry_hijack_and_card_flood_during_tenant_streams(
    tmp_path: Path, scenarios: ScenarioTable
) -> None:
    scenario = scenarios("attack: registry hijack + card flood")
    settings = RegistrySettings(token_file=registry_attacks._token_file(tmp_path))
    real = registry_attacks.fake_node("real")
    intruder = registry_attacks.fake_node("intruder", price=0.0)
    async with (
        registry_attacks.running(real, intruder),
        registry_attacks.router(settings, static=[real]) as mesh,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(mesh.channel)
        load = Load(stub, deterministic(FAKE_WORDS), scenario, streams=8, metadata=TENANT)
        task = load.start()
        card = registry_attacks.intruder_card()
        grab = registry_pb2.RegisterRequest(
            node_id="free-frontier", address=intruder.address, models=[card]
        )
        takeover = registry_pb2.RegisterRequest(
            node_id="real", address=intruder.address, models=[card]
        )
        token = ((NODE_TOKEN_HEADER, registry_attacks.TOKEN),)
        wrong = ((NODE_TOKEN_HEADER, "not-the-token-" + "x" * 20),)
        unauthenticated = (grpc.StatusCode.UNAUTHENTICATED, "NODE_TOKEN_MISSING")
        attacks = [
            (mesh.registry.Register(grab, timeout=10), unauthenticated),
            (
                mesh.registry.Register(grab, metadata=wrong, timeout=10),
                (grpc.StatusCode.UNAUTHENTICATED, "NODE_TOKEN_REJECTED"),
            ),
            (
                mesh.registry.Register(takeover, metadata=token, timeout=10),
                (grpc.StatusCode.ALREADY_EXISTS, "NODE_ID_STATIC"),
            ),
            (
                mesh.registry.Deregister(
                    registry_pb2.DeregisterRequest(node_id="real"), metadata=token, timeout=10
                ),
                (grpc.StatusCode.PERMISSION_DENIED, "NODE_ID_STATIC"),
            ),
        ]
        flood = registry_attacks.card_flood()
        attacks += [
            (
                mesh.registry.Register(flood, metadata=token, timeout=30),
                (grpc.StatusCode.INVALID_ARGUMENT, "REGISTRATION_TOO_LARGE"),
            )
            for _ in range(10)
        ]
        try:
            await asyncio.sleep(0.5)  # the streams are flowing
            outcomes = await asyncio.gather(
                *(_refused(scenario, call, expected) for call, expected in attacks)
            )
            await asyncio.sleep(0.5)
        finally:
            load.stop()
            await asyncio.wait_for(task, 30)
        scenario.figure(
            f"{len(attacks)} attack calls refused; {load.completed} tenant streams exact meanwhile"
        )
        assert [o for o in outcomes if o] == []
        assert not load.problems, load.problems[:10]
        assert load.completed >= load.streams
        assert registry_attacks.engine(intruder).completed == 0, "no prompt reached the intruder"
        assert await mesh.listed() == [("real", real.address, registry_pb2.NODE_SOURCE_STATIC)]


async def test_big_prompts_do_not_stall_tenant_streams_or_health(
    tmp_path: Path, scenarios: ScenarioTable
) -> None:
    scenario = scenarios("attack: 3 big prompts (3.9 MB)")
    async with big_prompts.router(tmp_path, max_prompt_chars=big_prompts.BIG + 1) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        load = Load(stub, deterministic(FAKE_WORDS), scenario, streams=8)
        task = load.start()
        try:
            await asyncio.sleep(0.5)
            started = time.monotonic()
            big = asyncio.gather(
                *(
                    stub.Generate(request("word " * (big_prompts.BIG // 5)), timeout=120)
                    for _ in range(3)
                ),
                return_exceptions=True,
            )
            # each within 1 s
            answered = await big_prompts._health_while(channel, cast("asyncio.Future[object]", big))
            took = time.monotonic() - started
        finally:
            load.stop()
            await asyncio.wait_for(task, 60)
        for outcome in await big:
            # Far over the default token_limit guard: blocked, never INTERNAL.
            assert isinstance(outcome, grpc.aio.AioRpcError)
            assert outcome.code() == grpc.StatusCode.PERMISSION_DENIED
            scenario.record(took, ok=False, expected=True)
        scenario.figure(
            f"{answered} health checks within {big_prompts.HEALTH_DEADLINE_S:g} s each and "
            f"{load.completed} tenant streams exact while the big prompts took {took:.1f} s"
        )
        assert not load.problems, load.problems[:10]
        assert answered >= 1

"""Faults: the PostgreSQL ledger restarts while the router serves load, and no row is lost.

A real PostgreSQL server (tests/fixtures/postgres.py; this test's own, since it restarts it)
holds the router's ledger; a node on FakeEngine (a deterministic test engine, named as such)
answers. Clients stream and call through the router while the server restarts (`pg_ctl restart
-m fast`: every connection dropped, the server away for a moment). Every answered request must
be in the ledger exactly once after the router stops: rows the router could not write while
the server was away are written once it is back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from pathlib import Path

import grpc.aio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from mesh.config import (
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RouterConfig,
    RoutingSettings,
)
from mesh.router.app import RouterRuntime
from mesh.v1 import inference_pb2_grpc
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.fixtures.postgres import running_postgres
from tests.reliability.load import ANSWER_WORDS, Load, deterministic
from tests.reliability.scenarios import ScenarioTable

pytestmark = pytest.mark.timeout(180)

LOAD_S = 1.5


async def _ledger_request_ids(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [r[0] for r in await conn.execute(text("SELECT request_id FROM mesh_ledger"))]
    finally:
        await engine.dispose()


async def test_a_ledger_restart_mid_load_loses_no_row(
    tmp_path: Path, scenarios: ScenarioTable, caplog: pytest.LogCaptureFixture
) -> None:
    if not os.environ.get("MESH_REQUIRE_POSTGRES"):  # CI must run it (tests/fixtures/postgres.py)
        pytest.importorskip("asyncpg", reason="asyncpg not installed: pip install -e '.[postgres]'")
    caplog.set_level(logging.WARNING, logger="mesh.router.ledger")
    scenario = scenarios("fault: PostgreSQL ledger restart")
    with running_postgres() as server:
        url = server.create_database("restart")
        engine = FakeEngine()
        engine.script.words_per_answer = ANSWER_WORDS
        node = NodeRuntime(NodeConfig(id="n1", engine="fake", model="fake-model"), engine)
        await node.start()
        router = RouterRuntime(
            RouterConfig(
                listen="127.0.0.1:0",
                guards=GuardSettings(watch=False, audit_url=f"sqlite+aiosqlite:///{tmp_path}/a.db"),
                cache=CacheSettings(enabled=False),
                ledger=LedgerSettings(url=url, flush_interval_s=0.05),
                routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
            )
        )
        router.add_upstream("n1", node.address)
        await router.start()
        try:
            async with grpc.aio.insecure_channel(router.address) as channel:
                stub = inference_pb2_grpc.InferenceServiceStub(channel)
                load = Load(stub, deterministic(), scenario, streams=6, unary=6, timeout_s=20)
                task = load.start()
                try:
                    await asyncio.sleep(LOAD_S)
                    await asyncio.to_thread(server.restart_in_child)
                    await asyncio.sleep(LOAD_S)
                finally:
                    load.stop()
                    await asyncio.wait_for(task, 30)
        finally:
            await router.stop(0)  # writes what is buffered
            await node.stop(0)
        stored = collections.Counter(await _ledger_request_ids(url))
    answered = collections.Counter(load.request_ids)
    lost = sorted(set(answered) - set(stored))
    twice = sorted(r for r, n in stored.items() if n > 1)
    scenario.figure(
        f"{len(answered)} answered, {sum(stored.values())} ledger rows; lost {len(lost)}, "
        f"written twice {len(twice)}"
    )
    assert "written again after" in caplog.text, "the restart made a flush fail and retry"
    assert not load.problems, load.problems[:10]
    assert all(n == 1 for n in answered.values()) and len(answered) > 20
    assert not lost, f"{len(lost)} answered requests have no ledger row: {lost[:5]}"
    assert not twice, twice[:5]
    assert set(stored) == set(answered)

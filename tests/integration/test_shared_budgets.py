"""Budgets shared by router replicas through PostgreSQL (tests/fixtures/postgres.py, loopback).

First the store itself (mesh.router.shared_budgets), two or three instances standing in for
replicas on one database: atomic holds, settlement at real cost with the ledger row, expiry of
a silent replica's holds, the day boundary, an outage. Then real `mesh router` processes over a
node process running FakeEngine (a deterministic test engine, named as such, whose answers start
after a delay so that requests are in flight together): three replicas under one budget, one of
them SIGKILLed mid-load, and the database going away.

Prices are chosen so that an estimate equals the real cost (no prompt price; max_tokens equals
the fake engine's eight words), so "never overspend" is checked exactly: total spend <= limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.config import BudgetSettings, TenantBudget
from mesh.contract.status import error_details
from mesh.router.auth import hash_api_key
from mesh.router.budget import BudgetExceeded
from mesh.router.database import open_engine
from mesh.router.ledger import LedgerRow
from mesh.router.shared_budgets import BudgetStoreUnavailable, SharedBudgets
from mesh.v1 import inference_pb2
from tests.fixtures.postgres import running_postgres
from tests.fixtures.replicas import Replica, lean_router, mesh_env, router_replicas
from tests.helpers import request, stream_request
from tests.process import MESH, ServerProcess, free_port

LIMIT_USD = 10.0
LIMIT = TenantBudget(daily_usd=LIMIT_USD)
# The node: no prompt price, $1 per 8 completion tokens, so a max_tokens=8 request is estimated
# at exactly what it costs: $1.
PRICE_OUT_PER_MTOK = 125_000.0
MAX_TOKENS = 8
NODE_DELAY_S = 5.0  # before the first token: long enough to see holds and kill a replica
HOLD_TTL_S = 10.0  # a killed replica's holds outlive the requests in flight at its death


def _row(request_id: str, tenant: str, cost: float) -> LedgerRow:
    return LedgerRow(request_id, tenant, "n", "m", 1, MAX_TOKENS, cost, 2 * cost, False, "p", 1)


async def _query(url: str, sql: str, **params: Any) -> list[Any]:
    """Rows read with a connection of our own (not a store's)."""
    engine = open_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _stores(url: str, *owners: str, ttl_s: float = 3.0) -> AsyncIterator[list[SharedBudgets]]:
    settings = BudgetSettings(tenants={"*": LIMIT}, hold_ttl_s=ttl_s)
    engines: list[AsyncEngine] = []
    stores = []
    for owner in owners:
        engines.append(open_engine(url))
        stores.append(SharedBudgets(engines[-1], settings, where="test db", owner=owner))
        await stores[-1].start()
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()
        for engine in engines:
            await engine.dispose()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return await check()


# -- the store ------------------------------------------------------------------------------
async def test_replicas_racing_for_one_budget_never_hold_more_than_it(
    fresh_postgres_url: str,
) -> None:
    async with _stores(fresh_postgres_url, "a", "b", "c") as stores:
        held: list[Any] = []

        async def take(store: SharedBudgets) -> bool:
            try:
                held.append((store, await store.reserve("acme", 1.0, LIMIT)))
            except BudgetExceeded:
                return False
            return True

        admitted = await asyncio.gather(*(take(stores[i % 3]) for i in range(30)))
        assert sum(admitted) == 10  # $10 of $1 holds, from three replicas at once
        figures = await stores[0].spent("acme")
        assert figures["reserved_usd"] == 10 and figures["holds"] == 10
        refusal = await _refused(stores[1], "acme", 0.5)
        assert refusal.metadata["budget"] == "daily" and refusal.metadata["reserved_usd"] == (
            "10.000000"
        )
        # Settled at real cost (less than held) with the ledger row, in one transaction.
        await asyncio.gather(
            *(
                store.settle("acme", [res], 0.25, _row(f"r{i}", "acme", 0.25))
                for i, (store, res) in enumerate(held)
            )
        )
        figures = await stores[2].spent("acme")
        assert figures == {
            "day_spent_usd": 2.5,
            "month_spent_usd": 2.5,
            "reserved_usd": 0.0,
            "holds": 0,
        }
        ledger = await _query(
            fresh_postgres_url,
            "SELECT count(*), sum(cost_usd) FROM mesh_ledger WHERE tenant='acme'",
        )
        assert tuple(ledger[0]) == (10, 2.5)
        # The headroom is the limit less real spend: 30 more quarter-dollar holds fit.
        for _ in range(30):
            await stores[0].reserve("acme", 0.25, LIMIT)
        await _refused(stores[0], "acme", 0.25)


async def _refused(store: SharedBudgets, tenant: str, amount: float) -> BudgetExceeded:
    with pytest.raises(BudgetExceeded) as info:
        await store.reserve(tenant, amount, LIMIT)
    return info.value


async def test_holds_of_a_replica_that_stops_renewing_expire_and_live_ones_do_not(
    fresh_postgres_url: str,
) -> None:
    # A 3 s TTL (renewed every second): a database that stalls for 2 s under a loaded CI
    # machine expired the live hold too at 1 s (seen once in CI: "no answer within 2s").
    async with _stores(fresh_postgres_url, "alive", "dead", ttl_s=3.0) as (alive, dead):
        kept = await alive.reserve("acme", 4.0, LIMIT)
        await dead.reserve("acme", 6.0, LIMIT)
        assert dead._loop is not None
        dead._loop.cancel()  # stops renewing, as a SIGKILLed router does
        await _refused(alive, "acme", 1.0)  # the dead replica's hold still counts ...

        async def reclaimed() -> bool:
            figures = await alive.spent("acme")
            return figures["holds"] == 1 and figures["reserved_usd"] == 4.0

        assert await _eventually(reclaimed)  # ... until it expires and is given back
        await asyncio.sleep(4.0)  # the live hold outlives its 3 s TTL: its replica renews it
        assert (await alive.spent("acme"))["reserved_usd"] == 4.0
        admitted = await alive.reserve("acme", 6.0, LIMIT)
        await alive.settle("acme", [kept, admitted], 10.0, _row("both", "acme", 10.0))
        assert await alive.spent("acme") == {
            "day_spent_usd": 10.0,
            "month_spent_usd": 10.0,
            "reserved_usd": 0.0,
            "holds": 0,
        }


async def test_a_new_day_starts_from_zero_and_a_new_tenant_from_the_ledger(
    fresh_postgres_url: str,
) -> None:
    async with _stores(fresh_postgres_url, "a") as (store,):
        res = await store.reserve("acme", 10.0, LIMIT)
        await store.settle("acme", [res], 10.0, _row("r1", "acme", 10.0))
        await _refused(store, "acme", 1.0)
        engine = open_engine(fresh_postgres_url)
        try:
            async with engine.begin() as conn:  # the tally was last touched yesterday
                await conn.execute(text("UPDATE mesh_budget_tally SET day = '2000-01-01'"))
                # Spend this tenant made before it had a budget is in the ledger only.
                await conn.execute(
                    text(
                        "INSERT INTO mesh_ledger (request_id, tenant, node_id, model, "
                        "input_tokens, output_tokens, cost_usd, estimated_cost_usd, "
                        "baseline_cost_usd, cache_hit, policy, tier, attempts, "
                        "guard_policy_version, created_at) VALUES ('old', 'newco', 'n', 'm', "
                        "1, 1, 7.5, 0, 0, false, 'p', '', 1, '', now())"
                    )
                )
        finally:
            await engine.dispose()
        await store.reserve("acme", 10.0, LIMIT)  # the whole daily budget again
        assert (await store.spent("acme"))["month_spent_usd"] == 10.0
        await store.reserve("newco", 2.5, LIMIT)
        await _refused(store, "newco", 0.01)
        assert (await store.spent("newco"))["day_spent_usd"] == 7.5


async def test_an_outage_refuses_or_admits_as_configured_and_loses_no_settlement() -> None:
    with running_postgres() as server:
        url = server.create_database()
        async with _stores(url, "closed") as (closed,):
            settings = BudgetSettings(tenants={"*": LIMIT}, on_store_error="open")
            open_engine_ = open_engine(url)
            opened = SharedBudgets(open_engine_, settings, where="test db", owner="open")
            await opened.start()
            try:
                held = await closed.reserve("acme", 2.0, LIMIT)
                server.pause()
                with pytest.raises(BudgetStoreUnavailable) as info:
                    await closed.reserve("acme", 1.0, LIMIT)
                assert info.value.reason == "BUDGET_STORE_UNAVAILABLE"
                assert "cannot be reached" in info.value.message and "127.0.0.1" not in str(
                    info.value.message
                )
                unchecked = await opened.reserve("acme", 3.0, LIMIT)  # admitted unchecked
                # Both answers arrive while the database is down: kept, then retried.
                await closed.settle("acme", [held], 2.0, _row("during-1", "acme", 2.0))
                await opened.settle("acme", [unchecked], 3.0, _row("during-2", "acme", 3.0))
                assert closed.unsettled == 1 and opened.unsettled == 1
                server.resume()

                async def written() -> bool:
                    return closed.unsettled == 0 and opened.unsettled == 0

                assert await _eventually(written)
                figures = await closed.spent("acme")
                assert figures["day_spent_usd"] == 5.0 and figures["reserved_usd"] == 0.0
                rows = await _query(url, "SELECT request_id FROM mesh_ledger ORDER BY request_id")
                assert [r[0] for r in rows] == ["during-1", "during-2"]  # each once
            finally:
                await opened.close()
                await open_engine_.dispose()


# -- router processes -----------------------------------------------------------------------
KEYS = {"acme": "key-acme", "kilo": "key-kilo", "free": "key-free"}


def _budgeted_router(url: str, node_address: str, on_store_error: str = "closed") -> dict[str, Any]:
    return lean_router(
        url,
        # Rows of budgeted tenants are written with their settlement, before the answer leaves
        # the router; a flush this rare shows no test relies on the buffered writer.
        ledger={"url": url, "flush_interval_s": 600},
        upstreams=[{"id": "slow", "address": node_address}],
        auth={
            "api_keys": [
                {"name": t, "sha256": hash_api_key(key), "tenant": t} for t, key in KEYS.items()
            ]
        },
        budgets={
            "tenants": {"acme": LIMIT.model_dump(), "kilo": LIMIT.model_dump()},
            "hold_ttl_s": HOLD_TTL_S,
            "on_store_error": on_store_error,
            "store_timeout_s": 10,  # a busy test machine is not an outage
        },
    )


async def _generate(
    replica: Replica, tenant: str, text_: str, timeout_s: float = 60.0
) -> inference_pb2.GenerateResponse:
    return await replica.stub.Generate(  # type: ignore[no-any-return]
        request(text_, max_tokens=MAX_TOKENS),
        metadata=(("x-api-key", KEYS[tenant]),),
        timeout=timeout_s,
    )


async def _stream(replica: Replica, tenant: str, text_: str) -> inference_pb2.GenerationSummary:
    events = [
        event
        async for event in replica.stub.GenerateStream(
            stream_request(text_, max_tokens=MAX_TOKENS),
            metadata=(("x-api-key", KEYS[tenant]),),
            timeout=60,
        )
    ]
    assert events[-1].HasField("summary")
    return events[-1].summary


@contextlib.contextmanager
def _slow_node(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    port = free_port()
    command = [MESH[0], "-m", "tests.fixtures.slow_node", "slow", str(port), str(NODE_DELAY_S)]
    command += ["0", "8", "0", str(PRICE_OUT_PER_MTOK)]  # no pause, 8 words, then the prices
    with ServerProcess(command, tmp_path / "node.log", env=mesh_env(), name="slow node") as node:
        node.wait_for_output(r"^ready ")
        yield node, f"127.0.0.1:{port}"


async def _outcomes(
    calls: Sequence[Awaitable[inference_pb2.GenerateResponse]],
) -> tuple[list[inference_pb2.GenerateResponse], list[grpc.aio.AioRpcError]]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    answered = [r for r in results if isinstance(r, inference_pb2.GenerateResponse)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    unexpected = [r for r in results if r not in answered and r not in failed]
    assert not unexpected, unexpected
    return answered, failed


async def _ledger(url: str, tenant: str) -> dict[str, float]:
    rows = await _query(
        url, "SELECT request_id, cost_usd FROM mesh_ledger WHERE tenant = :t", t=tenant
    )
    return {r[0]: float(r[1]) for r in rows}


async def _holds_of(url: str, pid: int) -> int:
    rows = await _query(
        url, "SELECT count(*) FROM mesh_budget_holds WHERE owner LIKE :o", o=f"%:{pid}:%"
    )
    return int(rows[0][0])


async def test_three_router_replicas_share_one_budget_and_a_killed_one_loses_nothing(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    url = fresh_postgres_url
    with _slow_node(tmp_path) as (_, node_address):
        async with router_replicas(tmp_path, [_budgeted_router(url, node_address)] * 3) as replicas:
            # 60 concurrent requests over three replicas; the budget admits 10 ($1 each).
            answered, failed = await _outcomes(
                [_generate(replicas[i % 3], "acme", f"question {i}") for i in range(60)]
            )
            spent = sum(r.usage.cost_usd for r in answered)
            assert 1 <= len(answered) <= 10 and len(answered) + len(failed) == 60
            assert spent <= LIMIT_USD  # exactly: estimates equal real costs here
            assert {e.code() for e in failed} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert {error_details(e).reason for e in failed} == {"BUDGET_EXCEEDED"}
            ledger = await _ledger(url, "acme")
            assert set(ledger) == {r.request_id for r in answered}
            assert sum(ledger.values()) == pytest.approx(spent)
            tally = await _query(
                url, "SELECT day_spent_usd, reserved_usd FROM mesh_budget_tally WHERE tenant='acme'"
            )
            assert tuple(tally[0]) == (pytest.approx(spent), 0.0)

            # Tenant kilo: the third replica takes 4 holds, the others the rest of the budget,
            # and the third is SIGKILLed while all of them are at the node.
            victim, survivors = replicas[2], replicas[:2]
            doomed = [
                asyncio.ensure_future(_generate(victim, "kilo", f"doomed {i}")) for i in range(4)
            ]

            async def victim_holds(n: int) -> bool:
                return await _holds_of(url, victim.process.pid) == n

            assert await _eventually(lambda: victim_holds(4))
            live = [
                asyncio.ensure_future(_generate(survivors[i % 2], "kilo", f"live {i}"))
                for i in range(12)
            ]

            async def budget_held() -> bool:
                rows = await _query(url, "SELECT count(*) FROM mesh_budget_holds")
                return int(rows[0][0]) == 10

            assert await _eventually(budget_held)
            os.kill(victim.process.pid, signal.SIGKILL)
            # Its holds outlive it (their expiry is HOLD_TTL_S away): the budget stays held.
            assert await _holds_of(url, victim.process.pid) == 4
            with pytest.raises(grpc.aio.AioRpcError) as still_held:
                await _generate(survivors[0], "kilo", "too early")
            assert error_details(still_held.value).reason == "BUDGET_EXCEEDED"
            answered, failed = await _outcomes(live)
            lost, _ = await _outcomes(doomed)
            assert len(answered) == 6 and not lost  # 6 holds on survivors, 6 refused
            assert all(error_details(e).reason == "BUDGET_EXCEEDED" for e in failed)

            async def expired() -> bool:
                return await _holds_of(url, victim.process.pid) == 0

            assert await _eventually(expired)
            late, refused = await _outcomes(
                [_generate(survivors[i % 2], "kilo", f"late {i}") for i in range(6)]
            )
            assert len(late) == 4 and len(refused) == 2  # $6 spent: $4 left
            # Nothing lost: every answer has its ledger row, written with its settlement.
            ledger = await _ledger(url, "kilo")
            assert set(ledger) == {r.request_id for r in answered + late}
            tally = await _query(
                url,
                "SELECT day_spent_usd, reserved_usd FROM mesh_budget_tally WHERE tenant='kilo'",
            )
            assert tuple(tally[0]) == (pytest.approx(sum(ledger.values())), 0.0)
            assert sum(ledger.values()) == pytest.approx(LIMIT_USD)
            # The dead replica's 4 holds were expired and said so, by one survivor or split
            # between both (their sweeps may run at the same moment: CI once logged 1 + 3).
            logs = survivors[0].process.output() + survivors[1].process.output()
            swept = re.findall(r"expired (\d+) budget hold\(s\) of tenant kilo", logs)
            assert sum(map(int, swept)) == 4, swept


async def test_a_database_outage_refuses_budgeted_tenants_only(tmp_path: Path) -> None:
    with running_postgres() as server, _slow_node(tmp_path) as (_, node_address):
        url = server.create_database()
        async with (
            router_replicas(tmp_path / "closed", [_budgeted_router(url, node_address)]) as (
                closed,
            ),
            router_replicas(tmp_path / "open", [_budgeted_router(url, node_address, "open")]) as (
                opened,
            ),
        ):
            before = await _generate(closed, "acme", "before")
            server.pause()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _generate(closed, "acme", "during")
            details = error_details(refused.value)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert details.reason == "BUDGET_STORE_UNAVAILABLE" and details.retryable
            assert "budget store cannot be reached" in details.message
            free = await _generate(closed, "free", "unbudgeted traffic keeps flowing")
            unchecked = await _generate(opened, "acme", "admitted unchecked")
            assert free.text and unchecked.text
            server.resume()

            async def recorded() -> bool:
                ledger = await _ledger(url, "acme")
                return unchecked.request_id in ledger

            assert await _eventually(recorded)  # the open replica's settlement, retried
            after = await _stream(closed, "acme", "after, streamed")
            ledger = await _ledger(url, "acme")
            assert set(ledger) == {before.request_id, unchecked.request_id, after.request_id}
            assert "budget store" in closed.process.output()  # the outage is logged ...
            assert "is back" in closed.process.output()  # ... and its end

"""The cost ledger on a real PostgreSQL server (tests/fixtures/postgres.py starts one on loopback).

Covers what differs from SQLite: column types and time zones, replicas creating the table and
writing at the same time, strict string sizes, a server that restarts or goes away, error text
without passwords, and `mesh costs` plus a router pointed at a `postgresql+asyncpg://` URL.
The router test uses FakeEngine nodes (a deterministic test engine): what is tested is the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from mesh.cli import cli
from mesh.config import (
    ApiKeyConfig,
    AuthSettings,
    BudgetSettings,
    LedgerSettings,
    TenantBudget,
)
from mesh.router.auth import hash_api_key
from mesh.router.cli import _summary
from mesh.router.database import LedgerError
from mesh.router.ledger import Ledger, LedgerEntry, LedgerRow, format_costs
from tests.fixtures.postgres import PostgresServer, running_postgres
from tests.helpers import LEDGER_NOW as NOW
from tests.helpers import ledger_row as _row
from tests.helpers import request, stream_request
from tests.integration.test_router_features import EASY, fake_node_config, mesh
from tests.process import free_port

# The fixtures are used only here; tests/conftest.py's pytest_plugins may list them instead.

CEST = dt.timezone(dt.timedelta(hours=2))


async def _table(url: str) -> list[dict[str, Any]]:
    """Every ledger row as stored, read with a connection of our own (not the ledger's)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(LedgerEntry.__table__).order_by(LedgerEntry.id))
            return [dict(r._mapping) for r in result]
    finally:
        await engine.dispose()


async def _scalar(url: str, sql: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar_one()
    finally:
        await engine.dispose()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> bool:
    """Poll an async condition (bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


async def test_every_column_round_trips_with_postgres_types(fresh_postgres_url: str) -> None:
    row = LedgerRow(
        request_id="req-1",
        tenant="acme",
        node_id="node-a",
        model="smollm2-135m-instruct",
        input_tokens=123,
        output_tokens=45,
        cost_usd=0.00123,
        baseline_cost_usd=0.0456,
        cache_hit=True,
        policy="cheapest",
        attempts=2,
        guard_policy_version="pv-7",
        estimated_cost_usd=0.002,
        tier="small",
        created_at=dt.datetime(2026, 5, 10, 14, 30, 15, 123456, tzinfo=CEST),
    )
    queued = dataclasses.replace(row, request_id="req-2", cache_hit=False, created_at=NOW)
    ledger = Ledger(fresh_postgres_url, flush_interval_s=0.05)
    await ledger.start()
    try:
        await ledger.record(row)
        ledger.record_nowait(queued)  # written by the background flusher, not by us

        async def both_written() -> bool:
            return len(await _table(fresh_postgres_url)) == 2

        assert await _eventually(both_written)
    finally:
        await ledger.close()
    stored = await _table(fresh_postgres_url)
    fields = {f.name for f in dataclasses.fields(LedgerRow)}
    assert set(stored[0]) == fields | {"id"}  # a new column must be added to LedgerRow and here
    for got, want in zip(stored, (row, queued), strict=True):
        assert {k: v for k, v in got.items() if k != "id"} == want.__dict__  # same instant
        assert got["created_at"].utcoffset() == dt.timedelta(0)  # timestamptz, read back in UTC
    assert stored[0]["created_at"].hour == 12  # 14:30 at +02:00
    types = await _column_types(fresh_postgres_url)  # what create_all made on PostgreSQL
    assert types["created_at"] == "timestamp with time zone"
    assert types["cost_usd"] == types["baseline_cost_usd"] == "double precision"
    assert types["cache_hit"] == "boolean" and types["input_tokens"] == "integer"


async def _column_types(url: str) -> dict[str, str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'mesh_ledger'"
                )
            )
            return {str(name): str(kind) for name, kind in result}
    finally:
        await engine.dispose()


async def test_names_longer_than_their_column_do_not_lose_the_batch(
    fresh_postgres_url: str,
) -> None:
    # SQLite stores any length; PostgreSQL refuses the whole INSERT, so the ledger clips.
    ledger = Ledger(fresh_postgres_url)
    await ledger.start()
    try:
        ledger.record_nowait(_row(1))
        ledger.record_nowait(_row(2, tenant="t" * 200, model="m" * 300))
        await ledger.flush()
    finally:
        await ledger.close()
    stored = await _table(fresh_postgres_url)
    assert [r["request_id"] for r in stored] == ["r1", "r2"]
    assert stored[1]["model"] == "m" * 256 and stored[1]["tenant"] == "t" * 128


async def test_tenants_and_spend_since_seed_budgets(fresh_postgres_url: str) -> None:
    day = NOW.replace(hour=0)
    month = day.replace(day=1)
    ledger = Ledger(fresh_postgres_url)
    await ledger.start()
    try:
        for i, (tenant, cost, when) in enumerate(
            [
                ("acme", 0.25, NOW),
                ("acme", 0.5, day),  # exactly the start of the day counts
                ("acme", 1.0, day - dt.timedelta(microseconds=1)),  # yesterday: month only
                ("acme", 2.0, month - dt.timedelta(days=1)),  # last month: neither
                ("globex", 4.0, NOW),
            ]
        ):
            ledger.record_nowait(_row(i, tenant=tenant, cost=cost, when=when))
        await ledger.flush()
        assert await ledger.tenants() == ["acme", "globex"]
        assert await ledger.spent_since("acme", day) == pytest.approx(0.75)
        assert await ledger.spent_since("acme", month) == pytest.approx(1.75)
        assert await ledger.spent_since("acme", day.astimezone(CEST)) == pytest.approx(0.75)
        assert await ledger.spent_since("globex", day) == pytest.approx(4.0)
        assert await ledger.spent_since("nobody", month) == 0.0
    finally:
        await ledger.close()


async def _seed_costs(url: str) -> None:
    ledger = Ledger(url)
    await ledger.start()
    try:
        for row in (
            _row(1, "acme", "smollm2", 0.001, 0.010),
            _row(2, "acme", "frontier", 0.010, 0.010),
            _row(3, "globex", "smollm2", 0.0, 0.008, hit=True),
            _row(4, "acme", "smollm2", 0.5, 0.5, when=NOW - dt.timedelta(days=40)),
        ):
            ledger.record_nowait(row)
        await ledger.flush()
    finally:
        await ledger.close()


async def test_costs_summary_aggregates_in_postgres(fresh_postgres_url: str) -> None:
    await _seed_costs(fresh_postgres_url)
    since = NOW - dt.timedelta(days=1)
    (total,) = await _summary(fresh_postgres_url, since, None)  # what `mesh costs` runs
    assert (total.key, total.requests, total.cache_hits) == ("total", 3, 1)
    assert total.spend_usd == pytest.approx(0.011)
    assert total.baseline_usd == pytest.approx(0.028)
    assert total.savings_routing_usd == pytest.approx(0.009)
    assert total.savings_cache_usd == pytest.approx(0.008)
    by_tenant = await _summary(fresh_postgres_url, since, "tenant")
    assert [(r.key, r.requests, r.cache_hits) for r in by_tenant] == [
        ("acme", 2, 0),
        ("globex", 1, 1),
    ]
    by_model = {r.key: r for r in await _summary(fresh_postgres_url, None, "model")}
    assert by_model["smollm2"].requests == 3 and by_model["smollm2"].spend_usd == pytest.approx(
        0.501
    )
    assert "globex" in format_costs(by_tenant, "tenant")


def test_mesh_costs_cli_reads_a_postgres_ledger(postgres_server: PostgresServer) -> None:
    # Sync test: the CLI runs its own event loop (asyncio.run), as it does from a shell.
    url = postgres_server.create_database("cli")
    asyncio.run(_seed_costs(url))
    config = postgres_server.root / "cli-mesh.yaml"
    config.write_text(f"router:\n  ledger:\n    url: {url}\n")
    runner = CliRunner()
    args = ["costs", "--config", str(config), "--since", "2026-05-09T12:00:00", "--by", "tenant"]
    result = runner.invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {r["key"]: r for r in json.loads(result.output)}
    assert set(rows) == {"acme", "globex"} and rows["acme"]["requests"] == 2
    assert rows["globex"]["savings_cache_usd"] == pytest.approx(0.008)
    table = runner.invoke(cli, args, catch_exceptions=False)
    assert table.exit_code == 0 and "globex" in table.output and "total" in table.output


def test_mesh_costs_cli_names_an_unusable_ledger_without_a_traceback(
    postgres_server: PostgresServer,
) -> None:
    config = postgres_server.root / "bad-mesh.yaml"
    url = f"postgresql+asyncpg://mesh:hunter2secret@127.0.0.1:{postgres_server.port}/no_such_db"
    config.write_text(f"router:\n  ledger:\n    url: {url}\n")
    result = CliRunner().invoke(cli, ["costs", "--config", str(config)])
    assert result.exit_code == 1 and result.exception is not None
    assert isinstance(result.exception, SystemExit)  # click's error exit, not a crash
    assert "no_such_db" in result.output and "Traceback" not in result.output
    assert "hunter2secret" not in result.output


async def test_replicas_create_the_table_and_write_together_without_losing_rows(
    fresh_postgres_url: str,
) -> None:
    replicas, per_replica = 4, 250
    ledgers = [Ledger(fresh_postgres_url, flush_interval_s=0.01, max_batch=7) for _ in range(4)]
    # All start at once on an empty database: CREATE TABLE must not race.
    await asyncio.gather(*(ledger.start() for ledger in ledgers))

    async def writer(n: int, ledger: Ledger) -> None:
        for i in range(per_replica):
            row = _row(n * per_replica + i, tenant=f"t{i % 3}", cost=0.001)
            if i % 10 == 0:
                await ledger.record(row)  # a direct flush racing the background flusher
            else:
                ledger.record_nowait(row)
            if i % 5 == 0:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(writer(n, ledger) for n, ledger in enumerate(ledgers)))
    finally:
        await asyncio.gather(*(ledger.close() for ledger in ledgers))
    total = replicas * per_replica
    assert await _scalar(fresh_postgres_url, "SELECT count(*) FROM mesh_ledger") == total
    assert (
        await _scalar(fresh_postgres_url, "SELECT count(DISTINCT request_id) FROM mesh_ledger")
        == total
    )
    reader = Ledger(fresh_postgres_url)
    await reader.start()
    try:
        (summary,) = await reader.summary()
        assert summary.requests == total and summary.spend_usd == pytest.approx(total * 0.001)
        assert await reader.tenants() == ["t0", "t1", "t2"]
    finally:
        await reader.close()


@pytest.mark.parametrize(
    ("make_url", "reason", "expected"),
    [
        (
            lambda s: f"postgresql+asyncpg://mesh:s3cret-pw@127.0.0.1:{free_port()}/db",
            "LEDGER_UNAVAILABLE",
            "cannot open (create table mesh_ledger): ConnectionRefusedError",
        ),
        (
            lambda s: f"postgresql+asyncpg://mesh:s3cret-pw@127.0.0.1:{s.port}/no_such_db",
            "LEDGER_UNAVAILABLE",
            'database "no_such_db" does not exist',
        ),
        (
            lambda s: f"postgresql+asyncpg://intruder:s3cret-pw@127.0.0.1:{s.port}/postgres",
            "LEDGER_UNAVAILABLE",
            'role "intruder" does not exist',
        ),
        (
            lambda s: f"postgresql://mesh:s3cret-pw@127.0.0.1:{s.port}/postgres",  # sync driver
            "INVALID_LEDGER_URL",
            "postgresql+asyncpg://USER@HOST:PORT/DB",
        ),
        (lambda s: "mesh:s3cret-pw at the db host", "INVALID_LEDGER_URL", "not a SQLAlchemy URL"),
    ],
    ids=["refused", "no-database", "no-role", "sync-driver", "not-a-url"],
)
async def test_bad_urls_fail_with_a_precise_error_and_no_password(
    postgres_server: PostgresServer,
    make_url: Callable[[PostgresServer], str],
    reason: str,
    expected: str,
) -> None:
    url = make_url(postgres_server)
    with pytest.raises(LedgerError) as info:
        ledger = Ledger(url, connect_timeout_s=5)
        try:
            await asyncio.wait_for(ledger.start(), 30)
        finally:
            await ledger.close()
    err = info.value
    assert err.reason == reason and expected in str(err)
    assert "s3cret-pw" not in str(err) and "s3cret-pw" not in repr(err.metadata)
    if "127.0.0.1" in url:
        assert "mesh:***@" in str(err) or "intruder:***@" in str(err)


async def test_a_server_that_never_answers_times_out_instead_of_hanging() -> None:
    with socket.socket() as silent:  # accepts TCP connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        ledger = Ledger(f"postgresql+asyncpg://mesh@127.0.0.1:{port}/db", connect_timeout_s=0.5)
        with pytest.raises(LedgerError, match=r"127\.0\.0\.1:\d+/db: cannot open .*no answer"):
            await asyncio.wait_for(ledger.start(), 30)  # a hang fails here, not at pytest timeout
        await ledger.close()


async def test_restart_costs_no_rows_and_an_outage_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_postgres() as server:  # our own server: this test stops it
        url = server.create_database("outage").replace("mesh@", "mesh:pw-never-logged@")
        ledger = Ledger(url, flush_interval_s=0.05, max_buffered=3)
        await ledger.start()
        try:
            await ledger.record(_row(1))
            server.restart()  # every pooled connection is now dead
            await ledger.record(_row(2))  # pinged, reconnected: not lost
            assert [r["request_id"] for r in await _table(url)] == ["r1", "r2"]
            server.stop()
            ledger.record_nowait(_row(3))
            with pytest.raises(LedgerError, match=r"cannot write 1 row\(s\): .*kept to retry"):
                await ledger.flush()
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="mesh.router.ledger"):
                ledger.record_nowait(_row(4))

                async def logged() -> bool:  # row 3 is retried with row 4
                    return "cannot write 2 row(s)" in caplog.text

                assert await _eventually(logged)  # the background flusher reported it
                assert ledger._task is not None and not ledger._task.done()  # and lives on
            # Past max_buffered the oldest rows go, counted.
            ledger.record_nowait(_row(5))
            ledger.record_nowait(_row(6))
            with pytest.raises(LedgerError, match="1 oldest lost past max_buffered 3"):
                await ledger.flush()
            assert ledger.lost_rows == 1
        finally:
            await ledger.close()  # logs the lost rows; does not raise
        assert ledger.lost_rows == 4
        assert "closing, so 3 row(s) are lost" in caplog.text
        assert "pw-never-logged" not in caplog.text


async def test_router_requests_land_as_rows_and_seed_shared_budgets_after_restart(
    fresh_postgres_url: str,
) -> None:
    auth = AuthSettings(
        api_keys=[ApiKeyConfig(name="acme-ci", sha256=hash_api_key("acme-secret"), tenant="acme")]
    )
    key = (("x-api-key", "acme-secret"),)
    ledger = LedgerSettings(url=fresh_postgres_url, flush_interval_s=0.05)
    async with mesh([fake_node_config("a")], auth=auth, ledger=ledger) as m:
        replies = [
            await m.stub.Generate(request(EASY, request_id=f"pg-{i}"), metadata=key, timeout=30)
            for i in range(2)
        ]
        events = [
            e
            async for e in m.stub.GenerateStream(
                stream_request(EASY, request_id="pg-stream"), metadata=key, timeout=30
            )
        ]
    answers = {r.request_id: (r.usage, r.route) for r in replies}
    summary = events[-1].summary
    answers[summary.request_id] = (summary.usage, summary.route)
    rows = {r["request_id"]: r for r in await _table(fresh_postgres_url)}
    assert set(rows) == {"pg-0", "pg-1", "pg-stream"}
    for request_id, (usage, route) in answers.items():
        row = rows[request_id]
        assert (row["tenant"], row["node_id"], row["model"]) == ("acme", "a", "fake-model")
        assert (row["input_tokens"], row["output_tokens"]) == (
            usage.input_tokens,
            usage.output_tokens,
        )
        assert row["cost_usd"] == pytest.approx(usage.cost_usd) and row["cost_usd"] > 0
        assert row["baseline_cost_usd"] == pytest.approx(route.baseline_cost_usd)
        assert row["estimated_cost_usd"] == pytest.approx(route.estimated_cost_usd)
        assert (row["policy"], row["attempts"], row["cache_hit"]) == (
            route.policy,
            route.attempts,
            False,
        )
    spent = sum(usage.cost_usd for usage, _ in answers.values())
    budgets = BudgetSettings(tenants={"*": TenantBudget(daily_usd=1.0)})
    async with mesh([fake_node_config("a")], auth=auth, ledger=ledger, budgets=budgets) as again:
        # Budgets on a PostgreSQL ledger are shared through it: the tenant's tally starts from
        # the ledger's rows at its first budgeted request.
        shared = again.router.shared.budgets if again.router.shared else None
        assert shared is not None
        after = await again.stub.Generate(request(EASY), metadata=key, timeout=30)
        figures = await shared.spent("acme")
    assert figures["day_spent_usd"] == pytest.approx(spent + after.usage.cost_usd)
    assert figures["month_spent_usd"] == pytest.approx(spent + after.usage.cost_usd)
    assert figures["reserved_usd"] == 0


def test_fixture_skips_with_an_install_hint_when_postgres_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tests.fixtures.postgres as fixture

    monkeypatch.setattr(fixture, "find_bin_dir", lambda: None)
    monkeypatch.delenv("MESH_REQUIRE_POSTGRES", raising=False)
    with (
        pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"),
        fixture.running_postgres(),
    ):
        pass  # pragma: no cover
    # Under .ci/run the same situation fails instead: CI must run these tests.
    monkeypatch.setenv("MESH_REQUIRE_POSTGRES", "1")
    with (
        pytest.raises(pytest.fail.Exception, match="apt-get install postgresql"),
        fixture.running_postgres(),
    ):
        pass  # pragma: no cover

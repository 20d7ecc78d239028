"""Ledger on a temporary SQLite file: rows, savings report, --since parsing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mesh.router.database import sqlite_url
from mesh.router.ledger import Ledger, format_costs
from tests.helpers import LEDGER_NOW as NOW
from tests.helpers import ledger_row as _row


async def test_summary_by_tenant_and_model(tmp_path: Path) -> None:
    ledger = Ledger(sqlite_url(str(tmp_path / "ledger.db")), flush_interval_s=0.05)
    await ledger.start()
    try:
        await ledger.record(_row(1, "acme", "smollm2", 0.001, 0.010))
        ledger.record_nowait(_row(2, "acme", "frontier", 0.010, 0.010))
        ledger.record_nowait(_row(3, "globex", "smollm2", 0.0, 0.008, hit=True))
        ledger.record_nowait(_row(4, "acme", "smollm2", 0.5, 0.5, when=NOW - dt.timedelta(days=40)))
        await ledger.flush()
        (total,) = await ledger.summary(since=NOW - dt.timedelta(days=1))
        assert total.requests == 3 and total.cache_hits == 1
        assert total.spend_usd == pytest.approx(0.011)
        assert total.baseline_usd == pytest.approx(0.028)
        assert total.savings_routing_usd == pytest.approx(0.009)
        assert total.savings_cache_usd == pytest.approx(0.008)
        by_tenant = {r.key: r for r in await ledger.summary(NOW - dt.timedelta(days=1), "tenant")}
        assert set(by_tenant) == {"acme", "globex"} and by_tenant["acme"].requests == 2
        by_model = {r.key: r for r in await ledger.summary(by="model")}
        assert by_model["smollm2"].requests == 3
        assert await ledger.spent_since("acme", NOW - dt.timedelta(days=1)) == pytest.approx(0.011)
        table = format_costs(await ledger.summary(by="tenant"), "tenant")
        assert "acme" in table and "total" in table and "saved cache $" in table
    finally:
        await ledger.close()
    reopened = Ledger(sqlite_url(str(tmp_path / "ledger.db")))
    await reopened.start()
    try:
        assert (await reopened.summary())[0].requests == 4  # rows survive a restart
    finally:
        await reopened.close()


def test_format_costs_without_rows() -> None:
    assert format_costs([]) == "no requests recorded"

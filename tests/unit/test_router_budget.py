"""Budgets: reservation before the call, settlement after, no overspend under concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from mesh.config import BaselineSettings, BudgetSettings, TenantBudget
from mesh.contract.errors import Code
from mesh.router.accounting import Accounting
from mesh.router.budget import BudgetExceeded, BudgetTracker
from mesh.router.database import open_engine
from mesh.router.shared_budgets import NO_HOLD, BudgetStoreUnavailable, SharedBudgets


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 31, 23, 0, tzinfo=dt.UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def _tracker(daily: float | None = 1.0, monthly: float | None = None) -> BudgetTracker:
    return BudgetTracker(
        BudgetSettings(tenants={"acme": TenantBudget(daily_usd=daily, monthly_usd=monthly)}),
        clock=FakeClock(),
    )


def test_reserve_settle_and_error_metadata() -> None:
    t = _tracker(daily=1.0)
    r = t.reserve("acme", 0.6)
    with pytest.raises(BudgetExceeded) as err:
        t.reserve("acme", 0.5)  # 0.6 in flight + 0.5 > 1.0
    e = err.value
    assert e.code is Code.RESOURCE_EXHAUSTED and e.reason == "BUDGET_EXCEEDED"
    assert e.metadata["budget"] == "daily" and e.metadata["limit_usd"] == "1.000000"
    assert e.metadata["spent_usd"] == "0.000000" and e.metadata["reserved_usd"] == "0.600000"
    t.settle(r, 0.1)  # actual far below the estimate frees the rest
    t.settle(r, 5.0)  # settling twice changes nothing
    assert t.spent("acme")["day_spent_usd"] == pytest.approx(0.1)
    t.release(t.reserve("acme", 0.85))
    assert t.spent("acme")["reserved_usd"] == 0.0


def test_unlisted_tenant_uses_star_or_is_unlimited() -> None:
    t = BudgetTracker(BudgetSettings(tenants={"*": TenantBudget(daily_usd=0.01)}))
    with pytest.raises(BudgetExceeded):
        t.reserve("anyone", 0.02)
    assert BudgetTracker().reserve("anyone", 1e9).amount_usd == 1e9


def test_monthly_budget_and_day_rollover() -> None:
    clock = FakeClock()
    t = BudgetTracker(
        BudgetSettings(tenants={"acme": TenantBudget(daily_usd=1.0, monthly_usd=1.5)}),
        clock=clock,
    )
    t.seed("acme", day_spent=0.9, month_spent=0.9)
    with pytest.raises(BudgetExceeded) as err:
        t.reserve("acme", 0.2)
    assert err.value.metadata["budget"] == "daily"
    clock.now += 2 * 3600  # April 1st: day and month both roll over
    t.settle(t.reserve("acme", 0.9), 0.9)
    clock.now += 86400
    with pytest.raises(BudgetExceeded) as err:
        t.reserve("acme", 0.7)
    assert err.value.metadata["budget"] == "monthly"


async def test_many_concurrent_requests_never_overspend() -> None:
    limit = 1.0
    t = _tracker(daily=limit)
    rng = random.Random(7)
    admitted = rejected = 0

    async def request() -> None:
        nonlocal admitted, rejected
        estimate = rng.uniform(0.01, 0.05)
        try:
            res = t.reserve("acme", estimate)
        except BudgetExceeded:
            rejected += 1
            return
        admitted += 1
        await asyncio.sleep(rng.uniform(0, 0.01))  # the upstream call
        t.settle(res, estimate * rng.uniform(0.3, 1.0))  # actual <= estimate

    await asyncio.gather(*(request() for _ in range(400)))
    spent = t.spent("acme")
    assert rejected > 0 and admitted > 0
    assert spent["day_spent_usd"] <= limit
    assert spent["reserved_usd"] == pytest.approx(0.0, abs=1e-9) and t.in_flight == 0


async def test_overspend_bounded_by_in_flight_when_actual_exceeds_estimate() -> None:
    t = _tracker(daily=1.0)
    holds = [t.reserve("acme", 0.1) for _ in range(10)]  # exactly the budget in flight
    with pytest.raises(BudgetExceeded):
        t.reserve("acme", 0.01)
    await asyncio.sleep(0)
    for res in holds:
        t.settle(res, 0.12)  # each ran 20 % over its estimate
    assert t.spent("acme")["day_spent_usd"] == pytest.approx(1.2)  # <= limit + in-flight excess


# -- through Accounting ------------------------------------------------------------------------
async def test_accounting_holds_raises_and_settles_in_process_with_its_ledger_row() -> None:
    accounting = Accounting(_tracker(daily=1.0), BaselineSettings())
    hold = await accounting.hold("acme", 0.4)
    await accounting.raise_to(hold, 0.7)  # a dearer fallback
    await accounting.raise_to(hold, 0.5)  # cheaper than held: nothing more
    assert hold.amount_usd == pytest.approx(0.7) and len(hold.reservations) == 2
    with pytest.raises(BudgetExceeded):
        await accounting.raise_to(hold, 1.2)
    assert hold.amount_usd == pytest.approx(0.7)  # holding as before
    await accounting.settle(hold, 0.3, None)
    assert accounting.budgets.spent("acme") == {
        "day_spent_usd": pytest.approx(0.3),
        "month_spent_usd": pytest.approx(0.3),
        "reserved_usd": 0,
    }
    stopped = await accounting.hold("acme", 0.2)
    accounting.settle_nowait(stopped, stopped.amount_usd)  # charged as held
    assert accounting.budgets.spent("acme")["day_spent_usd"] == pytest.approx(0.5)


async def test_shared_budgets_cost_no_round_trip_for_a_tenant_without_a_budget() -> None:
    pytest.importorskip("asyncpg", reason="asyncpg not installed: pip install -e '.[postgres]'")
    # Nothing listens on port 1: any use of the database fails at once.
    engine = open_engine("postgresql+asyncpg://mesh@127.0.0.1:1/none", connect_timeout_s=1)
    try:
        for mode in ("closed", "open"):
            settings = BudgetSettings(
                tenants={"acme": TenantBudget(daily_usd=1.0)}, on_store_error=mode
            )
            store = SharedBudgets(engine, settings, where="nowhere", owner="unit")
            accounting = Accounting(BudgetTracker(settings), BaselineSettings(), shared=store)
            free = await accounting.hold("free", 0.5)
            assert free.shared and not free.reservations and free.amount_usd == 0.5
            await accounting.settle(free, 0.5, None)
            if mode == "closed":
                with pytest.raises(BudgetStoreUnavailable) as info:
                    await accounting.hold("acme", 0.5)
                assert info.value.code is Code.UNAVAILABLE and info.value.retryable
                assert "127.0.0.1" not in info.value.message  # the database stays private
            else:
                unchecked = await accounting.hold("acme", 0.5)
                assert [r.id for r in unchecked.reservations] == [NO_HOLD]
                await accounting.settle(unchecked, 0.4, None)
                assert store.unsettled == 1  # kept for when the database is back
                await store.close()
    finally:
        await engine.dispose()

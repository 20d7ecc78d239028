"""Tenant budgets with pre-call reservation.

Checking spend after a call lets N concurrent requests all pass the same check and overspend by
N calls. Instead each request reserves its estimated cost before it is sent: the check counts
settled spend plus every reservation still in flight, and reserving is one synchronous step (no
await between check and add, plus a lock for callers in threads), so concurrent requests cannot
pass together. After the call the reservation is settled with the actual cost. Overspend is
thus bounded by how much actual costs exceed estimates of requests already admitted; estimates
use max_tokens, so actual costs are normally lower.

Periods are UTC days and calendar months. This tracker's spend is process-local; seed it from
the ledger at start (`seed`) so a restart does not reset a tenant's month. Router replicas that
share a PostgreSQL ledger share budgets through it instead (mesh.router.shared_budgets), with
the same admission rule.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mesh.config import BudgetSettings, TenantBudget
from mesh.contract.errors import Code, MeshError

Clock = Callable[[], float]


class BudgetExceeded(MeshError):
    """The request's estimated cost would take the tenant over a budget."""

    code = Code.RESOURCE_EXHAUSTED
    reason = "BUDGET_EXCEEDED"


def over_budget(
    tenant: str, name: str, limit: float, spent: float, reserved: float, estimate: float
) -> BudgetExceeded:
    """The refusal of a request whose estimate would take `tenant` over its `name` budget."""
    return BudgetExceeded(
        f"tenant {tenant!r} would exceed its {name} budget of ${limit:g}",
        metadata={
            "tenant": tenant,
            "budget": name,
            "limit_usd": f"{limit:.6f}",
            "spent_usd": f"{spent:.6f}",
            "reserved_usd": f"{reserved:.6f}",
            "estimate_usd": f"{estimate:.6f}",
        },
    )


@dataclass(frozen=True)
class Reservation:
    """An admitted request's hold on the budget, to settle or release exactly once."""

    id: int
    tenant: str
    amount_usd: float
    day: str
    month: str


@dataclass
class _Ledger:
    day: str = ""
    month: str = ""
    day_spent: float = 0.0
    month_spent: float = 0.0
    reserved: float = 0.0


def _periods(now: float) -> tuple[str, str]:
    """The UTC day and month `now` falls in (one cached formatting per day: every request asks)."""
    return _day_periods(int(now // 86_400))


@functools.lru_cache(maxsize=4)
def _day_periods(day: int) -> tuple[str, str]:
    t = dt.datetime.fromtimestamp(day * 86_400, tz=dt.UTC)
    return t.strftime("%Y-%m-%d"), t.strftime("%Y-%m")


class BudgetTracker:
    """Per-tenant daily/monthly spend and in-flight reservations."""

    def __init__(self, settings: BudgetSettings | None = None, clock: Clock = time.time) -> None:
        self.settings = settings or BudgetSettings()
        self._clock = clock
        self._tenants: dict[str, _Ledger] = {}
        self._open: dict[int, Reservation] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def budget(self, tenant: str) -> TenantBudget | None:
        return self.settings.tenants.get(tenant) or self.settings.tenants.get("*")

    def _ledger(self, tenant: str) -> _Ledger:
        day, month = _periods(self._clock())
        led = self._tenants.setdefault(tenant, _Ledger(day, month))
        if led.day != day:
            led.day, led.day_spent = day, 0.0
        if led.month != month:
            led.month, led.month_spent = month, 0.0
        return led

    def seed(self, tenant: str, day_spent: float, month_spent: float) -> None:
        """Spend already recorded this day/month (from the ledger at start)."""
        with self._lock:
            led = self._ledger(tenant)
            led.day_spent, led.month_spent = day_spent, month_spent

    def reserve(self, tenant: str, estimate_usd: float) -> Reservation:
        """Hold `estimate_usd` or raise BudgetExceeded naming the budget, limit and spend."""
        estimate_usd = max(estimate_usd, 0.0)
        with self._lock:
            led = self._ledger(tenant)
            limits = self.budget(tenant)
            if limits is not None:
                for name, limit, spent in (
                    ("daily", limits.daily_usd, led.day_spent),
                    ("monthly", limits.monthly_usd, led.month_spent),
                ):
                    if limit is not None and spent + led.reserved + estimate_usd > limit:
                        raise over_budget(tenant, name, limit, spent, led.reserved, estimate_usd)
            led.reserved += estimate_usd
            res = Reservation(next(self._ids), tenant, estimate_usd, led.day, led.month)
            self._open[res.id] = res
            return res

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the hold by the actual cost (0 for a failed call); idempotent."""
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                return
            led = self._ledger(reservation.tenant)
            led.reserved = max(led.reserved - reservation.amount_usd, 0.0)
            led.day_spent += max(actual_usd, 0.0)
            led.month_spent += max(actual_usd, 0.0)

    def release(self, reservation: Reservation) -> None:
        """Drop the hold without spending (the call never ran)."""
        self.settle(reservation, 0.0)

    def spent(self, tenant: str) -> Mapping[str, float]:
        """Current figures for a tenant (for logs, metrics and tests)."""
        with self._lock:
            led = self._ledger(tenant)
            return {
                "day_spent_usd": led.day_spent,
                "month_spent_usd": led.month_spent,
                "reserved_usd": led.reserved,
            }

    @property
    def in_flight(self) -> int:
        return len(self._open)

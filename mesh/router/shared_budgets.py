"""Budgets shared by router replicas through PostgreSQL (the ledger's database).

One in-process BudgetTracker per replica lets N replicas each spend the whole limit. Here the
check and the hold are one statement: a conditional UPDATE of the tenant's tally row (spend
this day and month, and what holds reserve) feeding the INSERT of the hold row. When replicas
race for the same row PostgreSQL re-checks the WHERE against the newest row version, so two
holds can never both pass on the same headroom. Settling deletes the request's holds, adds the
real cost to the tally and writes the request's ledger row in one transaction, before the
answer is released: a replica killed after that loses nothing.

A hold carries an expiry. Its router renews the holds it has open every third of `hold_ttl_s`;
a router that died mid-request stops renewing, and any replica's reaper deletes its holds once
they expire and gives their amount back. Days and months are UTC by the database's clock, so
replicas with skewed clocks agree on when a day ends. A tenant's tally row is seeded from the
ledger the first time the tenant is budgeted.

When the database cannot be reached, `budgets.on_store_error` decides: `closed` refuses a
budgeted tenant's request (UNAVAILABLE, BUDGET_STORE_UNAVAILABLE), `open` admits it unchecked.
A settlement that fails is kept and retried (its holds still renewed), idempotently (a marker
row per settlement), so the spend arrives late, never twice and never not at all, unless the
router dies first. Tenants without a budget never touch the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    insert,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.config import BudgetSettings, TenantBudget
from mesh.contract.errors import Code, MeshError
from mesh.router import shared_budgets_sql as sql
from mesh.router.budget import BudgetExceeded, Reservation, over_budget
from mesh.router.database import DDL_LOCK_KEY, why_failed
from mesh.router.ledger import LedgerEntry, LedgerRow, create_ledger_table, ledger_values

log = logging.getLogger(__name__)

_STOP_WAIT_S = 10.0
NO_HOLD = 0  # Reservation.id of a request admitted while the store was down (on_store_error open)

_STORE_ERRORS = (OSError, SQLAlchemyError, TimeoutError)


class BudgetStoreUnavailable(MeshError):
    """A budgeted tenant's request, refused because the shared budget store cannot be reached
    (router.budgets.on_store_error: closed)."""

    code = Code.UNAVAILABLE
    reason = "BUDGET_STORE_UNAVAILABLE"
    retryable = True


def router_identity() -> str:
    """This process among the replicas: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class _Settlement:
    """A request's settlement, kept until the database has taken it."""

    tenant: str
    hold_ids: list[int]
    cost_usd: float
    row: LedgerRow | None
    key: str = field(default_factory=lambda: secrets.token_hex(16))


class SharedBudgets:
    """Holds and spend of budgeted tenants in PostgreSQL, shared by every replica using it."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: BudgetSettings,
        *,
        where: str,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        # Single statements commit on their own: the tally row a hold locks is held for the
        # statement only, not for a further COMMIT round trip.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.settings = settings
        self.where = where  # the database as logs may name it (no password)
        self.owner = owner or router_identity()
        self.renew_interval_s = settings.hold_ttl_s / 3
        self._open: set[int] = set()  # hold ids this replica has not settled yet
        self._unsettled: list[_Settlement] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._down_since: float | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the tables (one replica at a time), then renew, retry and reap in the
        background. The ledger table is made too: a new tenant's tally is seeded from it."""
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK_KEY})
            await conn.run_sync(create_ledger_table)
            await conn.run_sync(sql.METADATA.create_all)
        self._loop = asyncio.create_task(self._maintain(), name="shared-budgets")
        log.info("budgets shared through %s as %s", self.where, self.owner)

    async def close(self) -> None:
        """Finish settlements in progress and retry kept ones once; what still fails is logged
        (those holds expire and their spend is missing from the tally and ledger)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=_STOP_WAIT_S)
        await self._retry_unsettled()
        if self._unsettled:
            lost = sum(job.cost_usd for job in self._unsettled)
            log.error(
                "%d budget settlement(s) ($%.6f) could not be written to %s before stopping",
                len(self._unsettled),
                lost,
                self.where,
            )

    # -- the request path -------------------------------------------------------------------
    async def reserve(self, tenant: str, amount_usd: float, limits: TenantBudget) -> Reservation:
        """Hold `amount_usd` for `tenant`, or raise BudgetExceeded (or BudgetStoreUnavailable)."""
        tenant = tenant[: sql.TENANT_CHARS]
        amount_usd = max(amount_usd, 0.0)
        try:
            async with asyncio.timeout(self.settings.store_timeout_s):
                hold_id = await self._reserve(tenant, amount_usd, limits)
        except _STORE_ERRORS as err:
            self._went_down(err)
            if self.settings.on_store_error == "open":
                return Reservation(NO_HOLD, tenant, amount_usd, "", "")
            raise BudgetStoreUnavailable(
                f"tenant {tenant!r} has a budget and the budget store cannot be reached, so its "
                "requests are refused until it is back (router.budgets.on_store_error: closed)",
                metadata={"tenant": tenant, "on_store_error": "closed"},
                retry_after_s=1.0,
            ) from None
        self._came_back()
        self._open.add(hold_id)
        return Reservation(hold_id, tenant, amount_usd, "", "")

    async def _reserve(self, tenant: str, amount: float, limits: TenantBudget) -> int:
        params = {
            "tenant": tenant,
            "amount": amount,
            "daily": limits.daily_usd,
            "monthly": limits.monthly_usd,
            "owner": self.owner,
            "ttl": self.settings.hold_ttl_s,
        }
        # Loops only on progress (a tally row seeded, holds reaped, others settled meanwhile);
        # the caller's timeout bounds it.
        while True:
            async with self._autocommit.connect() as conn:
                hold_id = (await conn.execute(sql.RESERVE, params)).scalar_one_or_none()
                if hold_id is not None:
                    return int(hold_id)
                figures = (await conn.execute(sql.FIGURES, {"tenant": tenant})).one_or_none()
                if figures is None:  # the first budgeted request of this tenant
                    await conn.execute(sql.SEED, {"tenant": tenant})
                    continue
            refusal = _refusal(
                tenant, limits, amount, figures.day_spent, figures.month_spent, figures.reserved_usd
            )
            # Expired holds of a replica that died may be all that stands in the way.
            if refusal is not None and tenant not in await self._reap():
                raise refusal

    async def settle(
        self,
        tenant: str,
        reservations: Sequence[Reservation],
        cost_usd: float,
        row: LedgerRow | None = None,
    ) -> None:
        """Replace the holds by the real cost and write the ledger row, in one transaction.

        Never raises for a database problem: the settlement is kept and retried. Shielded, so a
        caller cancelled meanwhile does not cancel the write.
        """
        job = _Settlement(
            tenant[: sql.TENANT_CHARS],
            [r.id for r in reservations if r.id != NO_HOLD],
            max(cost_usd, 0.0),
            row,
        )
        if not job.hold_ids and not job.cost_usd and job.row is None:
            return
        task = asyncio.ensure_future(self._settle_or_keep(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    def settle_nowait(
        self, tenant: str, reservations: Sequence[Reservation], cost_usd: float
    ) -> None:
        """`settle` without waiting (a request that ended without an answer)."""
        task = asyncio.ensure_future(self.settle(tenant, reservations, cost_usd))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_or_keep(self, job: _Settlement) -> None:
        if not await self._try_settlement(job):
            self._unsettled.append(job)

    async def _try_settlement(self, job: _Settlement) -> bool:
        try:
            async with asyncio.timeout(self.settings.store_timeout_s):
                await self._write_settlement(job)
        except _STORE_ERRORS as err:
            self._went_down(err)
            return False
        self._came_back()
        self._open.difference_update(job.hold_ids)
        return True

    async def _write_settlement(self, job: _Settlement) -> None:
        # The tenant's tally row is everyone's hot spot: it is locked last, one round trip
        # before the commit.
        async with self.engine.begin() as conn:
            if (await conn.execute(sql.MARK, {"key": job.key})).first() is None:
                return  # an earlier try committed (its answer was lost): applying it again
                # would count the spend twice
            if job.row is not None:
                await conn.execute(insert(LedgerEntry), [ledger_values(job.row)])
            params = {"ids": job.hold_ids, "cost": job.cost_usd, "tenant": job.tenant}
            if (await conn.execute(sql.SETTLE, params)).first() is None:
                # A tenant admitted unchecked (store down) has no tally yet: seeded from the
                # ledger, which already holds this row's cost when there is a row.
                await conn.execute(sql.SEED, {"tenant": job.tenant})
                seeded = {**params, "cost": 0.0} if job.row is not None else params
                await conn.execute(sql.SETTLE, seeded)

    # -- figures ----------------------------------------------------------------------------
    async def spent(self, tenant: str) -> Mapping[str, float]:
        """The tenant's shared figures now (for tests and operators)."""
        async with self.engine.connect() as conn:
            figures = (
                await conn.execute(sql.FIGURES, {"tenant": tenant[: sql.TENANT_CHARS]})
            ).one_or_none()
        if figures is None:
            return {"day_spent_usd": 0.0, "month_spent_usd": 0.0, "reserved_usd": 0.0, "holds": 0}
        return {
            "day_spent_usd": float(figures.day_spent),
            "month_spent_usd": float(figures.month_spent),
            "reserved_usd": float(figures.reserved_usd),
            "holds": int(figures.holds),
        }

    @property
    def open_holds(self) -> int:
        """Holds this replica has taken and not yet settled (kept settlements included)."""
        return len(self._open)

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    # -- in the background ------------------------------------------------------------------
    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval_s)
            for step in (self._renew, self._retry_unsettled, self._reap, self._prune):
                try:
                    async with asyncio.timeout(self.renew_interval_s):
                        await step()
                except _STORE_ERRORS as err:
                    self._went_down(err)
                except Exception:  # a bug here must not stop renewing holds
                    log.exception("shared budgets: %s failed", step.__name__)

    async def _renew(self) -> None:
        """Push back the expiry of the holds this replica still has open."""
        if not self._open:
            return
        async with self._autocommit.connect() as conn:
            await conn.execute(
                sql.RENEW,
                {"owner": self.owner, "ids": sorted(self._open), "ttl": self.settings.hold_ttl_s},
            )

    async def _retry_unsettled(self) -> None:
        """Kept settlements, oldest first, until one fails again."""
        for job in list(self._unsettled):
            if not await self._try_settlement(job):
                return
            self._unsettled.remove(job)

    async def _reap(self) -> set[str]:
        """Give back expired holds (their router stopped renewing); returns their tenants."""
        async with self.engine.begin() as conn:
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": sql.REAP_LOCK_KEY}
                )
            ).scalar_one()
            if not got:  # another replica is reaping right now
                return set()
            rows = (await conn.execute(sql.REAP)).all()
        for row in rows:
            log.warning(
                "expired %d budget hold(s) of tenant %s ($%.6f): their router stopped renewing "
                "them (it died mid-request)",
                row.holds,
                row.tenant,
                row.amount,
            )
        return {row.tenant for row in rows}

    async def _prune(self) -> None:
        async with self._autocommit.connect() as conn:
            await conn.execute(sql.PRUNE)

    def _went_down(self, err: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error(
                "budget store %s unavailable (%s): budgeted tenants are %s",
                self.where,
                why_failed(err, self.settings.store_timeout_s),
                "admitted unchecked"
                if self.settings.on_store_error == "open"
                else "refused (UNAVAILABLE)",
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning(
                "budget store %s is back after %.1fs",
                self.where,
                time.monotonic() - self._down_since,
            )
            self._down_since = None


def _refusal(
    tenant: str,
    limits: TenantBudget,
    amount: float,
    day_spent: float,
    month_spent: float,
    reserved: float,
) -> BudgetExceeded | None:
    """Which budget the hold would break (None: it fits now, others settled meanwhile)."""
    for name, limit, spent in (
        ("daily", limits.daily_usd, day_spent),
        ("monthly", limits.monthly_usd, month_spent),
    ):
        if limit is not None and spent + reserved + amount > limit:
            return over_budget(tenant, name, limit, spent, reserved, amount)
    return None

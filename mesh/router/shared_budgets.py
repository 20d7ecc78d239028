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
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    Float,
    MetaData,
    String,
    Table,
    TextClause,
    bindparam,
    func,
    insert,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.config import BudgetSettings, TenantBudget
from mesh.contract.errors import Code, MeshError
from mesh.router.budget import BudgetExceeded, Reservation, over_budget
from mesh.router.ledger import (
    DDL_LOCK_KEY,
    LedgerEntry,
    LedgerRow,
    create_ledger_table,
    ledger_values,
    why_failed,
)

log = logging.getLogger(__name__)

_TENANT_CHARS = 128  # the ledger's tenant column too
_REAP_LOCK_KEY = 0x6D65_7368_7265_6170  # one reaper at a time: two would deadlock on rows
_SETTLEMENT_KEEP = "1 day"  # markers older than this are pruned; retries come within minutes
_STOP_WAIT_S = 10.0
NO_HOLD = 0  # Reservation.id of a request admitted while the store was down (on_store_error open)

_metadata = MetaData()
TALLY = Table(
    "mesh_budget_tally",
    _metadata,
    Column("tenant", String(_TENANT_CHARS), primary_key=True),
    Column("day", String(10), nullable=False),
    Column("day_spent_usd", Float, nullable=False),
    Column("month", String(7), nullable=False),
    Column("month_spent_usd", Float, nullable=False),
    Column("reserved_usd", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
HOLDS = Table(
    "mesh_budget_holds",
    _metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant", String(_TENANT_CHARS), nullable=False, index=True),
    Column("amount_usd", Float, nullable=False),
    Column("owner", String(128), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)
SETTLEMENTS = Table(
    "mesh_budget_settlements",
    _metadata,
    Column("id", String(48), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

_TYPES: dict[str, Any] = {
    "amount": Float,
    "cost": Float,
    "ttl": Float,
    "daily": Float,
    "monthly": Float,
    "tenant": String,
    "owner": String,
    "key": String,
    "ids": ARRAY(BigInteger),
}


def _sql(statement: str) -> TextClause:
    """A statement whose parameters are typed (asyncpg then gets casts instead of guessing)."""
    return text(statement).bindparams(
        *(bindparam(name, type_=kind) for name, kind in _TYPES.items() if f":{name}" in statement)
    )


# The current UTC day and month by the database's clock, and a tally row's spend in them.
_DAY = "to_char(timezone('UTC', now()), 'YYYY-MM-DD')"
_MONTH = "to_char(timezone('UTC', now()), 'YYYY-MM')"
_DAY_SPENT = f"(CASE WHEN t.day = {_DAY} THEN t.day_spent_usd ELSE 0 END)"
_MONTH_SPENT = f"(CASE WHEN t.month = {_MONTH} THEN t.month_spent_usd ELSE 0 END)"

_RESERVE = _sql(
    f"""
    WITH admitted AS (
        UPDATE mesh_budget_tally AS t
        SET day = {_DAY}, day_spent_usd = {_DAY_SPENT},
            month = {_MONTH}, month_spent_usd = {_MONTH_SPENT},
            reserved_usd = t.reserved_usd + :amount, updated_at = now()
        WHERE t.tenant = :tenant
          AND (:daily IS NULL
               OR {_DAY_SPENT} + t.reserved_usd + :amount <= :daily)
          AND (:monthly IS NULL
               OR {_MONTH_SPENT} + t.reserved_usd + :amount <= :monthly)
        RETURNING t.tenant
    )
    INSERT INTO mesh_budget_holds (tenant, amount_usd, owner, expires_at)
    SELECT tenant, :amount, :owner, now() + make_interval(secs => :ttl) FROM admitted
    RETURNING id
    """  # noqa: S608 (constant fragments; values are bound)
)
_FIGURES = _sql(
    f"""
    SELECT {_DAY_SPENT} AS day_spent, {_MONTH_SPENT} AS month_spent, t.reserved_usd,
           (SELECT count(*) FROM mesh_budget_holds AS h WHERE h.tenant = t.tenant) AS holds
    FROM mesh_budget_tally AS t WHERE t.tenant = :tenant
    """  # noqa: S608 (constant fragments; values are bound)
)
# A tenant budgeted for the first time starts from what the ledger already holds.
_SEED = _sql(
    f"""
    INSERT INTO mesh_budget_tally
        (tenant, day, day_spent_usd, month, month_spent_usd, reserved_usd, updated_at)
    SELECT :tenant, {_DAY},
           coalesce(sum(l.cost_usd) FILTER (WHERE l.created_at >=
               date_trunc('day', timezone('UTC', now())) AT TIME ZONE 'UTC'), 0),
           {_MONTH}, coalesce(sum(l.cost_usd), 0), 0, now()
    FROM mesh_ledger AS l
    WHERE l.tenant = :tenant
      AND l.created_at >= date_trunc('month', timezone('UTC', now())) AT TIME ZONE 'UTC'
    ON CONFLICT (tenant) DO NOTHING
    """  # noqa: S608 (constant fragments; values are bound)
)
_MARK = _sql(
    "INSERT INTO mesh_budget_settlements (id) VALUES (:key) ON CONFLICT DO NOTHING RETURNING id"
)
# Holds already reaped give nothing back here (their reaper did), so nothing counts twice.
_SETTLE = _sql(
    f"""
    WITH released AS (
        DELETE FROM mesh_budget_holds WHERE id = ANY(:ids)
        RETURNING amount_usd
    )
    UPDATE mesh_budget_tally AS t
    SET day = {_DAY}, day_spent_usd = {_DAY_SPENT} + :cost,
        month = {_MONTH}, month_spent_usd = {_MONTH_SPENT} + :cost,
        reserved_usd = greatest(
            t.reserved_usd - (SELECT coalesce(sum(amount_usd), 0) FROM released), 0),
        updated_at = now()
    WHERE t.tenant = :tenant
    RETURNING t.tenant
    """  # noqa: S608 (constant fragments; values are bound)
)
_RENEW = _sql(
    """
    UPDATE mesh_budget_holds SET expires_at = now() + make_interval(secs => :ttl)
    WHERE owner = :owner AND id = ANY(:ids)
    """
)
_REAP = _sql(
    """
    WITH expired AS (
        DELETE FROM mesh_budget_holds WHERE expires_at < now() RETURNING tenant, amount_usd
    ), per_tenant AS (
        SELECT tenant, sum(amount_usd) AS amount, count(*) AS holds FROM expired GROUP BY tenant
    )
    UPDATE mesh_budget_tally AS t
    SET reserved_usd = greatest(t.reserved_usd - p.amount, 0), updated_at = now()
    FROM per_tenant AS p WHERE t.tenant = p.tenant
    RETURNING t.tenant, p.amount, p.holds
    """
)
_PRUNE = _sql(
    f"DELETE FROM mesh_budget_settlements WHERE created_at < now() - interval '{_SETTLEMENT_KEEP}'"  # noqa: S608
)
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
            await conn.run_sync(_metadata.create_all)
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
        tenant = tenant[:_TENANT_CHARS]
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
                hold_id = (await conn.execute(_RESERVE, params)).scalar_one_or_none()
                if hold_id is not None:
                    return int(hold_id)
                figures = (await conn.execute(_FIGURES, {"tenant": tenant})).one_or_none()
                if figures is None:  # the first budgeted request of this tenant
                    await conn.execute(_SEED, {"tenant": tenant})
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
            tenant[:_TENANT_CHARS],
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
            if (await conn.execute(_MARK, {"key": job.key})).first() is None:
                return  # an earlier try committed (its answer was lost): applying it again
                # would count the spend twice
            if job.row is not None:
                await conn.execute(insert(LedgerEntry), [ledger_values(job.row)])
            params = {"ids": job.hold_ids, "cost": job.cost_usd, "tenant": job.tenant}
            if (await conn.execute(_SETTLE, params)).first() is None:
                # A tenant admitted unchecked (store down) has no tally yet: seeded from the
                # ledger, which already holds this row's cost when there is a row.
                await conn.execute(_SEED, {"tenant": job.tenant})
                seeded = {**params, "cost": 0.0} if job.row is not None else params
                await conn.execute(_SETTLE, seeded)

    # -- figures ----------------------------------------------------------------------------
    async def spent(self, tenant: str) -> Mapping[str, float]:
        """The tenant's shared figures now (for tests and operators)."""
        async with self.engine.connect() as conn:
            figures = (
                await conn.execute(_FIGURES, {"tenant": tenant[:_TENANT_CHARS]})
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
                _RENEW,
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
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _REAP_LOCK_KEY}
                )
            ).scalar_one()
            if not got:  # another replica is reaping right now
                return set()
            rows = (await conn.execute(_REAP)).all()
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
            await conn.execute(_PRUNE)

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

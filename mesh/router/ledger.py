"""The cost ledger: one row per request, and the savings report behind `mesh costs`.

SQLAlchemy 2 async, so the same code writes a SQLite file (aiosqlite, the default) or PostgreSQL
(asyncpg, by URL). Rows are buffered and written in batches by a background task: a per-request
INSERT + COMMIT on SQLite costs milliseconds, which the request path must not pay.

Savings are measured against a configured premium baseline model: for a routed request the saving
is baseline minus actual cost ("from routing"); a cache hit costs nothing, so its whole baseline is
saved ("from cache").

On PostgreSQL several router replicas may share one ledger (and, through the same database,
budgets and registered nodes: mesh.router.shared_state): table creation is serialised with an
advisory lock, pooled connections are pinged before use, and strings are clipped to their column
sizes (PostgreSQL refuses longer ones, SQLite stores them). A batch the database refuses or
cannot take (a restart, an outage) stays buffered and is written with the next flush, so a
restart loses no row; the buffer is bounded (`max_buffered`), past it the oldest rows are lost
and counted. Database failures surface as `LedgerError`, naming the database without its
password; the background writer logs an outage once when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    case,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.config import LedgerSettings, ensure_sqlite_dir, field_default
from mesh.router.database import (
    DDL_LOCK_KEY,
    LedgerError,
    display_url,
    open_engine,
    why_failed,
)

log = logging.getLogger(__name__)

GroupBy = Literal["tenant", "model"]


class _Base(DeclarativeBase):
    pass


class LedgerEntry(_Base):
    """Table `mesh_ledger`."""

    __tablename__ = "mesh_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    node_id: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(256), index=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    estimated_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    baseline_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    policy: Mapped[str] = mapped_column(String(64), default="")
    tier: Mapped[str] = mapped_column(String(16), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    guard_policy_version: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True)
class LedgerRow:
    """What the servicer records for one finished request."""

    request_id: str
    tenant: str
    node_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    baseline_cost_usd: float
    cache_hit: bool
    policy: str
    attempts: int
    guard_policy_version: str = ""
    estimated_cost_usd: float = 0.0
    tier: str = ""
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class CostSummary:
    """One line of `mesh costs`: a group (tenant, model or "total") and its money."""

    key: str
    requests: int
    cache_hits: int
    spend_usd: float
    baseline_usd: float
    savings_routing_usd: float
    savings_cache_usd: float

    @property
    def savings_usd(self) -> float:
        return self.savings_routing_usd + self.savings_cache_usd


_STOP_WAIT_S = 30.0  # close() waits this long for a write in progress
# Rows kept while the database is away: ~0.5 KB each, so at most ~25 MB; at 100 requests/s, 8 min.
DEFAULT_MAX_BUFFERED = 50_000
_STRING_LIMITS = {
    column.name: column.type.length
    for column in LedgerEntry.__table__.columns
    if isinstance(column.type, String) and column.type.length
}


def create_ledger_table(sync_conn: Any) -> None:
    """`mesh_ledger` if it is missing (run_sync target; callers serialise replicas)."""
    _Base.metadata.create_all(sync_conn)


class Ledger:
    """Async ledger; `start()` creates the table, `close()` flushes and disposes."""

    def __init__(
        self,
        url: str,
        flush_interval_s: float = field_default(LedgerSettings, "flush_interval_s"),
        max_batch: int = 500,
        connect_timeout_s: float = 10.0,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self.url = url
        self.where = display_url(url)
        self._connect_timeout_s = connect_timeout_s
        self._engine: AsyncEngine = open_engine(url, connect_timeout_s)
        self._buffer: list[LedgerRow] = []
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._max_buffered = max_buffered
        self.lost_rows = 0  # rows dropped: past max_buffered, or unwritten at close
        self._failed_flushes = 0  # in a row, for the outage's start and end log lines
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._write_lock = asyncio.Lock()

    @contextlib.contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """Driver and connection errors become one LedgerError saying what failed where."""
        try:
            yield
        except (OSError, SQLAlchemyError) as err:
            raise LedgerError(
                f"ledger database {self.where}: cannot {action}: "
                f"{why_failed(err, self._connect_timeout_s)}",
                metadata={"database": self.where},
            ) from err

    async def start(self) -> None:
        ensure_sqlite_dir(self.url)
        with self._failures("open (create table mesh_ledger)"):
            async with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Replicas starting together would race on CREATE TABLE; one at a time.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK_KEY}
                    )
                await conn.run_sync(_Base.metadata.create_all)
        self._task = asyncio.create_task(self._flusher(), name="ledger-flusher")

    async def close(self) -> None:
        """Write what is buffered; a broken database is logged, never raised at shutdown."""
        if self._task is not None:
            # Cancelling the flusher mid-write would lose the batch in its hands: let it finish.
            self._stopping = True
            self._wake.set()
            await asyncio.wait({self._task}, timeout=_STOP_WAIT_S)
            self._task.cancel()  # only still running if its write outlived the wait
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except LedgerError as err:
            lost, self._buffer = len(self._buffer), []
            self.lost_rows += lost
            why = err.__cause__ if isinstance(err.__cause__, LedgerError) else err
            log.error("%s; closing, so %d row(s) are lost", why, lost)
        finally:
            await self._engine.dispose()

    def record_nowait(self, row: LedgerRow) -> None:
        """Queue a row; the background task writes it within flush_interval_s."""
        self._buffer.append(row)
        if len(self._buffer) >= self._max_batch:
            self._wake.set()

    async def record(self, row: LedgerRow) -> None:
        """Write one row now (tests, CLI); the request path uses `record_nowait`."""
        self._buffer.append(row)
        await self.flush()

    async def flush(self) -> None:
        """Write what is buffered; rows that cannot be written stay buffered for the next flush
        (LedgerError says so), the oldest dropped past `max_buffered`."""
        async with self._write_lock:
            rows, self._buffer = self._buffer, []
            if not rows:
                return
            values = [ledger_values(row) for row in rows]
            try:
                with self._failures(f"write {len(rows)} row(s)"):
                    async with self._engine.begin() as conn:
                        await conn.execute(insert(LedgerEntry), values)
            except LedgerError as err:
                self._buffer[:0] = rows  # before what arrived meanwhile: order kept
                dropped = len(self._buffer) - self._max_buffered
                if dropped > 0:
                    del self._buffer[:dropped]
                    self.lost_rows += dropped
                kept = f"kept to retry ({len(self._buffer)} buffered)"
                if dropped > 0:
                    kept += f", {dropped} oldest lost past max_buffered {self._max_buffered}"
                raise LedgerError(f"{err.message}; {kept}", metadata=err.metadata) from err

    async def _flusher(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
            self._wake.clear()
            if self._stopping:
                return  # close() writes what is left
            try:
                await self.flush()
            except LedgerError as err:  # a broken database must not kill the router
                self._failed_flushes += 1
                if self._failed_flushes == 1:  # the outage's first line; the rest are retries
                    log.error("%s", err)
                else:
                    log.debug("%s", err)
                continue
            except Exception:
                log.exception("ledger flush failed")
                continue
            if self._failed_flushes:
                log.warning(
                    "ledger database %s written again after %d failed flush(es)",
                    self.where,
                    self._failed_flushes,
                )
                self._failed_flushes = 0

    async def spent_since(self, tenant: str, since: dt.datetime) -> float:
        """A tenant's spend since a time (seeds budgets at start)."""
        stmt = select(func.coalesce(func.sum(LedgerEntry.cost_usd), 0.0)).where(
            LedgerEntry.tenant == tenant, LedgerEntry.created_at >= since
        )
        with self._failures("read spend"):
            async with self._engine.connect() as conn:
                return float((await conn.execute(stmt)).scalar_one())

    async def tenants(self) -> list[str]:
        with self._failures("read tenants"):
            async with self._engine.connect() as conn:
                result = await conn.execute(select(LedgerEntry.tenant).distinct())
                return sorted(r[0] for r in result)

    async def summary(
        self, since: dt.datetime | None = None, by: GroupBy | None = None
    ) -> list[CostSummary]:
        """Spend, baseline and savings, grouped by tenant or model, or one total row."""
        saving = LedgerEntry.baseline_cost_usd - LedgerEntry.cost_usd
        group = {"tenant": LedgerEntry.tenant, "model": LedgerEntry.model}.get(by or "")
        columns = [
            func.count(LedgerEntry.id),
            func.coalesce(func.sum(case((LedgerEntry.cache_hit, 1), else_=0)), 0),
            func.coalesce(func.sum(LedgerEntry.cost_usd), 0.0),
            func.coalesce(func.sum(LedgerEntry.baseline_cost_usd), 0.0),
            func.coalesce(func.sum(case((LedgerEntry.cache_hit, 0.0), else_=saving)), 0.0),
            func.coalesce(func.sum(case((LedgerEntry.cache_hit, saving), else_=0.0)), 0.0),
        ]
        stmt = select(group, *columns) if group is not None else select(*columns)
        if since is not None:
            stmt = stmt.where(LedgerEntry.created_at >= since)
        if group is not None:
            stmt = stmt.group_by(group).order_by(group)
        with self._failures("read the cost summary"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        out = []
        for row in rows:
            values = tuple(row)
            key = str(values[0]) if group is not None else "total"
            n, hits, spend, base, s_route, s_cache = values[1:] if group is not None else values
            if not n:
                continue
            out.append(
                CostSummary(
                    key,
                    int(n),
                    int(hits),
                    float(spend),
                    float(base),
                    float(s_route),
                    float(s_cache),
                )
            )
        return out


def ledger_values(row: LedgerRow) -> dict[str, object]:
    """One INSERT's parameters: UTC time, strings clipped so one long name never fails a batch."""
    values: dict[str, object] = {**row.__dict__, "created_at": row.created_at.astimezone(dt.UTC)}
    for name, limit in _STRING_LIMITS.items():
        value = values[name]
        if isinstance(value, str) and len(value) > limit:
            values[name] = value[:limit]
    return values


def format_costs(rows: Sequence[CostSummary], by: GroupBy | None = None) -> str:
    """The `mesh costs` table, with a total line when grouped."""
    header: tuple[str, ...] = (
        by or "scope",
        "requests",
        "cache hits",
        "spend $",
        "baseline $",
        "saved routing $",
        "saved cache $",
        "saved %",
    )
    lines: list[tuple[str, ...]] = [header]
    totals = list(rows)
    if by is not None and rows:
        totals.append(
            CostSummary(
                "total",
                sum(r.requests for r in rows),
                sum(r.cache_hits for r in rows),
                sum(r.spend_usd for r in rows),
                sum(r.baseline_usd for r in rows),
                sum(r.savings_routing_usd for r in rows),
                sum(r.savings_cache_usd for r in rows),
            )
        )
    for r in totals:
        pct = 100.0 * r.savings_usd / r.baseline_usd if r.baseline_usd else 0.0
        lines.append(
            (
                r.key,
                str(r.requests),
                str(r.cache_hits),
                f"{r.spend_usd:.6f}",
                f"{r.baseline_usd:.6f}",
                f"{r.savings_routing_usd:.6f}",
                f"{r.savings_cache_usd:.6f}",
                f"{pct:.1f}",
            )
        )
    if len(lines) == 1:
        return "no requests recorded"
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )

"""The shared budgets' tables and statements (PostgreSQL; mesh.router.shared_budgets runs them).

Each check-and-hold, settlement, renewal and reap is one statement, so replicas racing for a
tenant's tally row are serialised by PostgreSQL's row locks, never by the routers.
"""

from __future__ import annotations

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
    text,
)

TENANT_CHARS = 128  # the ledger's tenant column too
REAP_LOCK_KEY = 0x6D65_7368_7265_6170  # one reaper at a time: two would deadlock on rows
SETTLEMENT_KEEP = "1 day"  # markers older than this are pruned; retries come within minutes

METADATA = MetaData()
TALLY = Table(
    "mesh_budget_tally",
    METADATA,
    Column("tenant", String(TENANT_CHARS), primary_key=True),
    Column("day", String(10), nullable=False),
    Column("day_spent_usd", Float, nullable=False),
    Column("month", String(7), nullable=False),
    Column("month_spent_usd", Float, nullable=False),
    Column("reserved_usd", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
HOLDS = Table(
    "mesh_budget_holds",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant", String(TENANT_CHARS), nullable=False, index=True),
    Column("amount_usd", Float, nullable=False),
    Column("owner", String(128), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)
SETTLEMENTS = Table(
    "mesh_budget_settlements",
    METADATA,
    Column("id", String(48), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

TYPES: dict[str, Any] = {
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
        *(bindparam(name, type_=kind) for name, kind in TYPES.items() if f":{name}" in statement)
    )


# The current UTC day and month by the database's clock, and a tally row's spend in them.
DAY = "to_char(timezone('UTC', now()), 'YYYY-MM-DD')"
MONTH = "to_char(timezone('UTC', now()), 'YYYY-MM')"
DAY_SPENT = f"(CASE WHEN t.day = {DAY} THEN t.day_spent_usd ELSE 0 END)"
MONTH_SPENT = f"(CASE WHEN t.month = {MONTH} THEN t.month_spent_usd ELSE 0 END)"

RESERVE = _sql(
    f"""
    WITH admitted AS (
        UPDATE mesh_budget_tally AS t
        SET day = {DAY}, day_spent_usd = {DAY_SPENT},
            month = {MONTH}, month_spent_usd = {MONTH_SPENT},
            reserved_usd = t.reserved_usd + :amount, updated_at = now()
        WHERE t.tenant = :tenant
          AND (:daily IS NULL
               OR {DAY_SPENT} + t.reserved_usd + :amount <= :daily)
          AND (:monthly IS NULL
               OR {MONTH_SPENT} + t.reserved_usd + :amount <= :monthly)
        RETURNING t.tenant
    )
    INSERT INTO mesh_budget_holds (tenant, amount_usd, owner, expires_at)
    SELECT tenant, :amount, :owner, now() + make_interval(secs => :ttl) FROM admitted
    RETURNING id
    """  # noqa: S608 (constant fragments; values are bound)
)
FIGURES = _sql(
    f"""
    SELECT {DAY_SPENT} AS day_spent, {MONTH_SPENT} AS month_spent, t.reserved_usd,
           (SELECT count(*) FROM mesh_budget_holds AS h WHERE h.tenant = t.tenant) AS holds
    FROM mesh_budget_tally AS t WHERE t.tenant = :tenant
    """  # noqa: S608 (constant fragments; values are bound)
)
# A tenant budgeted for the first time starts from what the ledger already holds.
SEED = _sql(
    f"""
    INSERT INTO mesh_budget_tally
        (tenant, day, day_spent_usd, month, month_spent_usd, reserved_usd, updated_at)
    SELECT :tenant, {DAY},
           coalesce(sum(l.cost_usd) FILTER (WHERE l.created_at >=
               date_trunc('day', timezone('UTC', now())) AT TIME ZONE 'UTC'), 0),
           {MONTH}, coalesce(sum(l.cost_usd), 0), 0, now()
    FROM mesh_ledger AS l
    WHERE l.tenant = :tenant
      AND l.created_at >= date_trunc('month', timezone('UTC', now())) AT TIME ZONE 'UTC'
    ON CONFLICT (tenant) DO NOTHING
    """  # noqa: S608 (constant fragments; values are bound)
)
MARK = _sql(
    "INSERT INTO mesh_budget_settlements (id) VALUES (:key) ON CONFLICT DO NOTHING RETURNING id"
)
# Holds already reaped give nothing back here (their reaper did), so nothing counts twice.
SETTLE = _sql(
    f"""
    WITH released AS (
        DELETE FROM mesh_budget_holds WHERE id = ANY(:ids)
        RETURNING amount_usd
    )
    UPDATE mesh_budget_tally AS t
    SET day = {DAY}, day_spent_usd = {DAY_SPENT} + :cost,
        month = {MONTH}, month_spent_usd = {MONTH_SPENT} + :cost,
        reserved_usd = greatest(
            t.reserved_usd - (SELECT coalesce(sum(amount_usd), 0) FROM released), 0),
        updated_at = now()
    WHERE t.tenant = :tenant
    RETURNING t.tenant
    """  # noqa: S608 (constant fragments; values are bound)
)
RENEW = _sql(
    """
    UPDATE mesh_budget_holds SET expires_at = now() + make_interval(secs => :ttl)
    WHERE owner = :owner AND id = ANY(:ids)
    """
)
REAP = _sql(
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
PRUNE = _sql(
    f"DELETE FROM mesh_budget_settlements WHERE created_at < now() - interval '{SETTLEMENT_KEEP}'"  # noqa: S608
)

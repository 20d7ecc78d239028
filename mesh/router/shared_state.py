"""What router replicas share when their ledger is PostgreSQL: budgets and registered nodes.

Several routers behind one Service must agree on money (else N replicas may each spend a
tenant's whole budget) and on which nodes exist (else a node that registered with one replica
is unknown to the others). Both live in the ledger's database, so pointing `router.ledger.url`
at PostgreSQL is the only setting. Circuit breakers, outlier ejection and the caches stay per
replica: each replica judges the nodes by the calls it made itself, as Envoy's outlier detection
does, and a cache miss costs a call, never correctness. With SQLite (or no ledger) each router
keeps budgets and its routing table in its own memory, as one router needs.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.config import RouterConfig
from mesh.contract.errors import MeshError
from mesh.router.catalog import Catalog
from mesh.router.database import LedgerError, display_url, is_postgres, open_engine, why_failed
from mesh.router.shared_budgets import SharedBudgets
from mesh.router.shared_registry import RegistryStoreUnavailable, SharedRegistry

# Requests wait on this pool for holds and settlements: larger than SQLAlchemy's default 5 (+10)
# so that a burst of budgeted requests queues in the database, not in the pool.
_POOL_SIZE = 10
_POOL_OVERFLOW = 20


class SharedState:
    """The shared budgets (when any tenant has a budget) and the shared registry of a router."""

    def __init__(
        self,
        engine: AsyncEngine,
        budgets: SharedBudgets | None,
        registry: SharedRegistry,
        where: str,
    ) -> None:
        self.engine = engine
        self.where = where
        self.budgets = budgets
        self.registry = registry

    @classmethod
    def for_router(cls, config: RouterConfig, catalog: Catalog) -> SharedState | None:
        """None unless the ledger URL is PostgreSQL."""
        url = config.ledger_url()
        if not is_postgres(url):
            return None
        where = display_url(url)
        engine = open_engine(url, pool_size=_POOL_SIZE, max_overflow=_POOL_OVERFLOW)
        budgets = (
            SharedBudgets(engine, config.budgets, where=where) if config.budgets.tenants else None
        )
        registry = SharedRegistry(
            engine,
            catalog,
            where=where,
            sync_interval_s=min(config.health_interval_s, config.registry.heartbeat_interval_s / 2),
        )
        return cls(engine, budgets, registry, where)

    async def start(self) -> None:
        """After the ledger started (a new tenant's budget is seeded from its table).
        LedgerError names the database (never its password) when it cannot be used."""
        try:
            if self.budgets is not None:
                await self.budgets.start()
            await self.registry.start()
        except (OSError, SQLAlchemyError, RegistryStoreUnavailable) as err:
            raise LedgerError(
                f"ledger database {self.where}: cannot open the shared budget and node tables: "
                f"{err.message if isinstance(err, MeshError) else why_failed(err, 10.0)}",
                metadata={"database": self.where},
            ) from err

    async def close(self) -> None:
        """After the server stopped: settlements in progress are finished first."""
        try:
            await self.registry.close()
            if self.budgets is not None:
                await self.budgets.close()
        finally:
            await self.engine.dispose()

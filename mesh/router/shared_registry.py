"""Registered nodes shared by router replicas through PostgreSQL (the ledger's database).

A node registers through one replica (its `--router` address, or the pod a Service picked)
while clients reach every replica. So each registry write goes to a table in the ledger's
database as well as to the replica's Catalog, and ownership is decided there in one statement
(a conditional upsert): a lease issued by replica A is honoured by replica B, and two replicas
cannot give one node id to two holders. Every replica reads the table every sync interval (half
a heartbeat interval, at most its probe interval) and mirrors it into its Catalog, so a node
registered through A is routable from B within one heartbeat interval, and leaves B's table
when it deregisters through any replica or stops heartbeating past the TTL.

Chosen over discovery of node pods through a Kubernetes headless Service: DNS answers carry
addresses only, so the model cards, prices, load and lease a registration carries, and the
registration token check, would be lost or redone by probing; nodes outside the cluster (a GPU
box, a bridge elsewhere) could not join; and the loopback tests could not exercise it. The
database is already there for shared budgets and the ledger.

A database that cannot be reached degrades to per-replica tables: Register answers UNAVAILABLE
(ownership cannot be decided; the node retries), heartbeats are applied locally, mirroring
pauses (a node heartbeating through another replica then leaves this one's table after the TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    TextClause,
    bindparam,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.contract.errors import Code, MeshError
from mesh.router.catalog import Catalog
from mesh.router.database import DDL_LOCK_KEY, why_failed
from mesh.v1 import registry_pb2, types_pb2

log = logging.getLogger(__name__)

_DB_TIMEOUT_S = 2.0  # a registry call waits at most this for the database
_metadata = MetaData()
NODES = Table(
    "mesh_registry_nodes",
    _metadata,
    Column("node_id", String(128), primary_key=True),
    Column("address", String(256), nullable=False),
    Column("models", LargeBinary, nullable=False),  # a RegisterRequest holding only `models`
    Column("load", LargeBinary, nullable=False),  # a NodeLoad
    Column("lease_digest", LargeBinary, nullable=False),  # SHA-256 of the lease, never the lease
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)
_TYPES: dict[str, Any] = {
    "node_id": String,
    "address": String,
    "models": LargeBinary,
    "load": LargeBinary,
    "digest": LargeBinary,
    "ttl": Float,
}


def _sql(statement: str) -> TextClause:
    """A statement whose parameters are typed (asyncpg then gets casts instead of guessing)."""
    return text(statement).bindparams(
        *(bindparam(name, type_=kind) for name, kind in _TYPES.items() if f":{name}" in statement)
    )


_LIVE = "n.last_seen >= now() - make_interval(secs => :ttl)"
_COLUMNS = (
    "n.node_id, n.address, n.models, n.load, n.lease_digest, "
    "extract(epoch from now() - n.last_seen) AS age_s"
)
_LIST = _sql(f"SELECT {_COLUMNS} FROM mesh_registry_nodes AS n WHERE {_LIVE}")  # noqa: S608
_ONE = _sql(
    f"SELECT {_COLUMNS} FROM mesh_registry_nodes AS n WHERE n.node_id = :node_id AND {_LIVE}"  # noqa: S608
)
# A new registration, its holder's refresh, or taking over an id whose holder went silent.
_CLAIM = _sql(
    """
    INSERT INTO mesh_registry_nodes AS n
        (node_id, address, models, load, lease_digest, registered_at, last_seen)
    VALUES (:node_id, :address, :models, :load, :digest, now(), now())
    ON CONFLICT (node_id) DO UPDATE
    SET address = excluded.address, models = excluded.models, load = excluded.load,
        lease_digest = excluded.lease_digest, last_seen = now(),
        registered_at = CASE WHEN n.lease_digest = excluded.lease_digest
                             THEN n.registered_at ELSE now() END
    WHERE n.lease_digest = excluded.lease_digest
       OR n.last_seen < now() - make_interval(secs => :ttl)
    RETURNING n.node_id
    """
)
_HEARTBEAT = _sql(
    f"""
    UPDATE mesh_registry_nodes AS n SET load = :load, last_seen = now()
    WHERE n.node_id = :node_id AND n.lease_digest = :digest AND {_LIVE}
    RETURNING n.node_id
    """  # noqa: S608 (constant fragments; values are bound)
)
_DEREGISTER = _sql(
    "DELETE FROM mesh_registry_nodes WHERE node_id = :node_id AND lease_digest = :digest"
)
_PURGE = _sql(
    "DELETE FROM mesh_registry_nodes AS n WHERE n.last_seen < now() - make_interval(secs => :ttl)"
)
_STORE_ERRORS = (OSError, SQLAlchemyError, TimeoutError)


class RegistryStoreUnavailable(MeshError):
    """The shared registry's database cannot be reached, so a registration cannot be decided."""

    code = Code.UNAVAILABLE
    reason = "REGISTRY_STORE_UNAVAILABLE"
    retryable = True


class SharedRegistry:
    """The registered rows of a Catalog, kept in PostgreSQL and mirrored back from it."""

    def __init__(
        self,
        engine: AsyncEngine,
        catalog: Catalog,
        *,
        where: str,
        sync_interval_s: float,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.where = where
        self.sync_interval_s = sync_interval_s
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self._refused_static: set[str] = set()

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK_KEY})
            await conn.run_sync(_metadata.create_all)
        await self.sync()
        self._task = asyncio.create_task(self._sync_loop(), name="shared-registry")
        log.info(
            "registered nodes shared through %s (read every %gs)", self.where, self.sync_interval_s
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- writes (from RegistryService, after its checks) ------------------------------------
    async def pull(self, node_id: str) -> None:
        """This node's row as the table holds it now, into the Catalog (or out of it)."""
        async with self._store("read node " + node_id), self.engine.connect() as conn:
            row = (
                await conn.execute(_ONE, {"node_id": node_id, "ttl": self.catalog.ttl_s})
            ).one_or_none()
        if row is None:
            self.catalog.deregister(node_id)  # static entries stay
        else:
            self._mirror(row)

    async def claim(
        self,
        node_id: str,
        address: str,
        cards: Sequence[types_pb2.ModelCard],
        load: types_pb2.NodeLoad,
        digest: bytes,
    ) -> bool:
        """Register or refresh `node_id` for the lease with `digest`; False when another
        holder's live registration has it."""
        params = {
            "node_id": node_id,
            "address": address,
            "models": registry_pb2.RegisterRequest(models=cards).SerializeToString(),
            "load": load.SerializeToString(),
            "digest": digest,
            "ttl": self.catalog.ttl_s,
        }
        async with self._store("register node " + node_id), self.engine.begin() as conn:
            return (await conn.execute(_CLAIM, params)).first() is not None

    async def heartbeat(self, node_id: str, load: types_pb2.NodeLoad, digest: bytes) -> bool:
        """Record a holder's heartbeat; False when the table no longer gives it the id (expired,
        taken over, deregistered elsewhere). A database away counts as True: the heartbeat is
        applied locally, and registered nodes stay routable meanwhile."""
        params = {
            "node_id": node_id,
            "load": load.SerializeToString(),
            "digest": digest,
            "ttl": self.catalog.ttl_s,
        }
        try:
            async with self._store("heartbeat node " + node_id), self.engine.begin() as conn:
                return (await conn.execute(_HEARTBEAT, params)).first() is not None
        except RegistryStoreUnavailable:
            return True

    async def deregister(self, node_id: str, digest: bytes) -> None:
        """Remove the holder's row; a database away is logged (the row expires with its TTL)."""
        with contextlib.suppress(RegistryStoreUnavailable):
            async with self._store("deregister node " + node_id), self.engine.begin() as conn:
                await conn.execute(_DEREGISTER, {"node_id": node_id, "digest": digest})

    # -- reads (every sync interval) --------------------------------------------------------
    async def sync(self) -> None:
        """Mirror every live row into the Catalog; forget registered nodes the table dropped."""
        started = self.catalog.now()
        async with self._store("list nodes"), self.engine.begin() as conn:
            await conn.execute(_PURGE, {"ttl": self.catalog.ttl_s})
            rows = (await conn.execute(_LIST, {"ttl": self.catalog.ttl_s})).all()
        for row in rows:
            self._mirror(row)
        for node_id in self.catalog.forget_registered([r.node_id for r in rows], started):
            log.info("node %s left the shared registry", node_id)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval_s)
            try:
                await self.sync()
            except RegistryStoreUnavailable:
                pass  # logged once by _store; the local table serves meanwhile
            except Exception:  # a bug here must not stop mirroring
                log.exception("shared registry sync failed")

    def _mirror(self, row: Row[Any]) -> None:
        node_id: str = row.node_id
        mirrored = self.catalog.mirror(
            node_id,
            row.address,
            registry_pb2.RegisterRequest.FromString(row.models).models,
            types_pb2.NodeLoad.FromString(row.load),
            lease_digest=bytes(row.lease_digest),
            age_s=float(row.age_s),
        )
        if not mirrored and node_id not in self._refused_static:
            self._refused_static.add(node_id)
            log.warning(
                "node %s registered through another router replica has the id of a static "
                "upstream of this one: this replica keeps its static node",
                node_id,
            )

    @contextlib.asynccontextmanager
    async def _store(self, action: str) -> AsyncIterator[None]:
        """Bounded database work; failures become RegistryStoreUnavailable, logged once."""
        try:
            async with asyncio.timeout(_DB_TIMEOUT_S):
                yield
        except _STORE_ERRORS as err:
            if not self._down:
                self._down = True
                log.error(
                    "shared registry %s unavailable (%s: %s): each replica serves its own table "
                    "until it is back",
                    self.where,
                    action,
                    why_failed(err, _DB_TIMEOUT_S),
                )
            raise RegistryStoreUnavailable(
                "the shared node registry cannot be reached; try again shortly",
                retry_after_s=1.0,
            ) from None
        if self._down:
            self._down = False
            log.warning("shared registry %s is back", self.where)

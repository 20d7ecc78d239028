"""components/postgres: the routers' mesh.yaml names PostgreSQL as `postgresql+asyncpg://` with
nothing in it, and the connection comes from the libpq variables of the Secret mesh-postgres
(PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE). Run here against the real throw-away server
(tests/fixtures/postgres.py), with the URLs read from the component's own mesh.yaml.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from guards.audit import AuditLog, DecisionQuery
from mesh.config import MeshConfig, load_config
from mesh.router.database import LedgerError
from mesh.router.ledger import Ledger, LedgerEntry
from tests.deploy.k8s import K8S
from tests.fixtures.postgres import PostgresServer
from tests.helpers import ledger_row
from tests.process import free_port

COMPONENT_CONFIG = K8S / "components" / "postgres" / "router-mesh.yaml"


@pytest.fixture
def config() -> MeshConfig:
    return load_config(COMPONENT_CONFIG)


def _secret_env(monkeypatch: pytest.MonkeyPatch, url: str, port: int) -> None:
    """What `envFrom: mesh-postgres` gives the router container."""
    parsed = make_url(url)
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(port))
    monkeypatch.setenv("PGUSER", str(parsed.username))
    monkeypatch.setenv("PGPASSWORD", "from-the-secret")  # the fixture's server trusts loopback
    monkeypatch.setenv("PGDATABASE", str(parsed.database))


async def test_ledger_and_audit_connect_from_the_secrets_variables(
    config: MeshConfig,
    postgres_server: PostgresServer,
    fresh_postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert config.router.ledger_url() == "postgresql+asyncpg://"
    assert config.router.guards.resolved_audit_url() == "postgresql+asyncpg://"
    _secret_env(monkeypatch, fresh_postgres_url, postgres_server.port)

    ledger = Ledger(config.router.ledger_url())
    await ledger.start()
    try:
        await ledger.record(ledger_row(1, tenant="acme", cost=0.25))
        assert await ledger.tenants() == ["acme"]
    finally:
        await ledger.close()
    audit = AuditLog.from_settings(config.router.guards)
    await audit.start()
    try:
        assert await audit.query(DecisionQuery()) == ([], "")
    finally:
        await audit.close()

    # The rows are in the database the variables named, read with an explicit URL.
    engine = create_async_engine(fresh_postgres_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(LedgerEntry))).scalar() == 1
    finally:
        await engine.dispose()


async def test_the_variables_are_what_connects(
    config: MeshConfig,
    postgres_server: PostgresServer,
    fresh_postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Control: the same URL with PGPORT naming a port nobody listens on does not connect."""
    _secret_env(monkeypatch, fresh_postgres_url, free_port())
    ledger = Ledger(config.router.ledger_url(), connect_timeout_s=5)
    with pytest.raises(LedgerError):
        await ledger.start()
    await ledger.close()

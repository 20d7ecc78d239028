"""The SQL database behind the router's ledger, shared budgets and shared registry: opening an
engine for a URL, and saying what went wrong without ever showing its password.

SQLAlchemy 2 async: a SQLite file (aiosqlite, the default) or PostgreSQL (asyncpg), by URL.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mesh.contract.errors import Code, MeshError


def sqlite_url(path: str) -> str:
    return f"sqlite+aiosqlite:///{path}"


class LedgerError(MeshError):
    """The ledger database cannot be used; the message names it (never its password) and why."""

    code = Code.UNAVAILABLE
    reason = "LEDGER_UNAVAILABLE"


# Any constant works: it only has to be the same in every replica creating tables.
DDL_LOCK_KEY = 0x6D65_7368_6C65_6467
_URL_HINT = (
    "use sqlite+aiosqlite:///PATH, or postgresql+asyncpg://USER@HOST:PORT/DB "
    "with the postgres extra installed (pip install 'inference-mesh[postgres]')"
)


def display_url(url: str) -> str:
    """The URL as it may appear in errors and logs: no password, no query (it may hold one)."""
    try:
        return make_url(url).set(query={}).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<not a SQLAlchemy URL>"


def why_failed(err: BaseException, timeout_s: float) -> str:
    """The driver's own first line (`database "x" does not exist`), not SQLAlchemy's SQL dump."""
    inner: BaseException = err
    if isinstance(err, DBAPIError) and err.orig is not None:
        inner = err.orig.__cause__ or err.orig
    if isinstance(inner, TimeoutError):
        return f"no answer within {timeout_s:g}s"
    lines = str(inner).strip().splitlines()
    detail = lines[0] if lines else ""
    if detail.startswith("<class "):  # the asyncpg adapter prefixes the exception class
        detail = detail.split(": ", 1)[-1]
    return f"{type(inner).__name__}: {detail}" if detail else type(inner).__name__


def is_postgres(url: str) -> bool:
    """Whether a ledger URL names PostgreSQL (router replicas then share budgets through it)."""
    try:
        return make_url(url).get_backend_name() == "postgresql"
    except (SQLAlchemyError, ValueError):
        return False


def open_engine(url: str, connect_timeout_s: float = 10.0, **pool: int) -> AsyncEngine:
    """An async engine for a ledger URL (pinged before use; `pool`: pool_size, max_overflow);
    LedgerError when the URL is unusable."""
    try:
        parsed = make_url(url)
        # asyncpg waits 60 s for an unresponsive server by default; the router's start and
        # `mesh costs` should say what is wrong sooner.
        connect_args = (
            {"timeout": connect_timeout_s} if parsed.get_driver_name() == "asyncpg" else {}
        )
        return create_async_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **pool)
    except (SQLAlchemyError, ImportError, ValueError) as err:
        where = display_url(url)
        raise LedgerError(
            f"ledger url {where} is not usable ({why_failed(err, connect_timeout_s)}): {_URL_HINT}",
            reason="INVALID_LEDGER_URL",
            code=Code.FAILED_PRECONDITION,
            metadata={"database": where},
        ) from None

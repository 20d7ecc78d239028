"""Audit log of guard decisions (SQLAlchemy 2 async; SQLite by default, Postgres by URL).

Stored: every non-allow verdict, monitored would-be verdicts included, with a sha256 of the
checked text. The text itself only when the policy sets `store_content: true`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import DateTime, Index, String, Text, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guards.verdict import Action, Finding, GuardOutcome
from mesh.config import ensure_sqlite_dir

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class _Base(DeclarativeBase):
    pass


class GuardDecisionRow(_Base):
    __tablename__ = "guard_decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str] = mapped_column(String(128), default="")
    tenant: Mapped[str] = mapped_column(String(128))
    guard: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(64))
    findings_json: Mapped[str] = mapped_column(Text, default="[]")
    content_sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_guard_decisions_time", "decided_at", "id"),
        Index("ix_guard_decisions_tenant", "tenant", "decided_at"),
    )


@dataclass(frozen=True)
class DecisionQuery:
    """Filters for `AuditLog.query`; empty fields do not filter."""

    tenant: str = ""
    guard: str = ""
    since: dt.datetime | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""


@dataclass(frozen=True)
class Decision:
    """One audited decision, as read back."""

    id: str
    decided_at: dt.datetime
    request_id: str
    tenant: str
    guard: str
    stage: str
    action: str
    mode: str
    policy_version: str
    findings: tuple[Finding, ...]
    content_sha256: str
    content: str | None


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _token(row: GuardDecisionRow) -> str:
    raw = f"{_utc(row.decided_at).isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _untoken(token: str) -> tuple[dt.datetime, str]:
    try:
        stamp, row_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return dt.datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid page_token") from exc


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored value is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class AuditLog:
    """Writes and pages through guard decisions."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def start(self) -> None:
        ensure_sqlite_dir(self.engine.url.render_as_string(hide_password=False))
        async with self.engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def record(
        self,
        outcomes: Iterable[GuardOutcome],
        *,
        text: str,
        tenant: str,
        request_id: str,
        policy_version: str,
        store_content: bool = False,
    ) -> int:
        """Store the non-allow outcomes; returns how many rows were written."""
        outcomes = [o for o in outcomes if o.verdict.action is not Action.ALLOW]
        if not outcomes:  # most requests: nothing to hash, stamp or write
            return 0
        now = dt.datetime.now(dt.UTC)
        digest = content_sha256(text)
        rows = [
            GuardDecisionRow(
                id=str(uuid.uuid4()),
                decided_at=now,
                request_id=request_id,
                tenant=tenant,
                guard=o.guard,
                stage=o.stage.value,
                action=o.verdict.action.value,
                mode=o.mode.value,
                policy_version=policy_version,
                findings_json=json.dumps(
                    [
                        {"type": f.type, "start": f.start, "end": f.end, "score": f.score}
                        for f in o.verdict.findings
                    ]
                ),
                content_sha256=digest,
                content=text if store_content else None,
            )
            for o in outcomes
        ]
        if rows:
            async with self._sessions() as session, session.begin():
                session.add_all(rows)
        return len(rows)

    async def query(self, q: DecisionQuery) -> tuple[list[Decision], str]:
        """A page of decisions, newest first, and the token of the next page ("" on the last)."""
        size = DEFAULT_PAGE_SIZE if q.page_size <= 0 else min(q.page_size, MAX_PAGE_SIZE)
        stmt = select(GuardDecisionRow)
        if q.tenant:
            stmt = stmt.where(GuardDecisionRow.tenant == q.tenant)
        if q.guard:
            stmt = stmt.where(GuardDecisionRow.guard == q.guard)
        if q.since is not None:
            stmt = stmt.where(GuardDecisionRow.decided_at >= _utc(q.since))
        if q.page_token:
            stamp, row_id = _untoken(q.page_token)
            stmt = stmt.where(
                or_(
                    GuardDecisionRow.decided_at < stamp,
                    and_(GuardDecisionRow.decided_at == stamp, GuardDecisionRow.id < row_id),
                )
            )
        stmt = stmt.order_by(GuardDecisionRow.decided_at.desc(), GuardDecisionRow.id.desc()).limit(
            size + 1
        )
        async with self._sessions() as session:
            rows = list((await session.scalars(stmt)).all())
        next_token = _token(rows[size - 1]) if len(rows) > size else ""
        return [_decision(r) for r in rows[:size]], next_token


def _decision(row: GuardDecisionRow) -> Decision:
    return Decision(
        id=row.id,
        decided_at=_utc(row.decided_at),
        request_id=row.request_id,
        tenant=row.tenant,
        guard=row.guard,
        stage=row.stage,
        action=row.action,
        mode=row.mode,
        policy_version=row.policy_version,
        findings=tuple(
            Finding(f["type"], f["start"], f["end"], f["score"])
            for f in json.loads(row.findings_json)
        ),
        content_sha256=row.content_sha256,
        content=row.content,
    )

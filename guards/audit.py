"""Audit log of guard decisions (SQLAlchemy 2 async; SQLite by default, Postgres by URL).

Stored: every non-allow verdict, monitored would-be verdicts included (a guard that failed
under `on_error: open` is a flag with a GUARD_ERROR finding), with a sha256 of the checked
text. The text itself only when the policy sets `store_content: true`. And every ApplyPolicy
call and every change of the watched policy file (`policy_changes`): who (or which file), dry
run or not, the versions before and after, and whether it was applied, validated, refused as
invalid or denied to the caller.

Bounded while the router runs (`router.guards.audit_retention_days`, `audit_max_rows`): a
background task, started by the first write, deletes rows past the age every
`prune_interval_s`, and the oldest rows down to LOW_WATER of the row bound as soon as a write
may have crossed it. It only issues
SQL through the async engine (aiosqlite's thread, or the database server), so the event loop
never does the work; a request's audit write never waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Boolean, DateTime, Index, String, Text, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guards.verdict import GUARD_ERROR, Action, Finding, GuardOutcome
from mesh.config import GuardSettings, ensure_sqlite_dir, field_default

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_MAX_ROWS: int = field_default(GuardSettings, "audit_max_rows")
DEFAULT_RETENTION_DAYS: float = field_default(GuardSettings, "audit_retention_days")
PRUNE_INTERVAL_S = 60.0
LOW_WATER = 0.8  # a row prune leaves this share of max_rows, so the next is some writes away


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


class PolicyChangeRow(_Base):
    """One ApplyPolicy call or policy-file change. Few (people make them), so kept apart from
    the decisions, whose row bound would otherwise push them out."""

    __tablename__ = "policy_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(160))
    tenant: Mapped[str] = mapped_column(String(128), default="")
    dry_run: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(16))
    version_before: Mapped[str] = mapped_column(String(64), default="")
    version_after: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(64), default="api")
    reason: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class PolicyChange:
    """An ApplyPolicy call or a watched policy file's change, as audited. `outcome`: applied |
    validated (dry run) | invalid (the policy was refused) | denied (the caller was) | failed;
    `actor` "admin-key", "api-key:NAME", "file:PATH" (source "file") or "" when the caller
    was not identified; `reason`: why it was refused."""

    actor: str
    dry_run: bool
    outcome: str
    version_before: str
    version_after: str = ""
    tenant: str = ""
    source: str = "api"
    reason: str = ""
    changed_at: dt.datetime | None = None
    id: str = ""


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
    error_type: str = ""  # why the guard could not decide; "" when it ran


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _token(row: GuardDecisionRow) -> str:
    raw = f"{_utc(row.decided_at).isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def cursor_of(token: str) -> tuple[dt.datetime, str] | None:
    """The (time, id) a page token continues after; None for "". ValueError: not our token."""
    if not token:
        return None
    try:
        stamp, row_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        when = dt.datetime.fromisoformat(stamp)
        return (when.astimezone(dt.UTC) if when.tzinfo else _utc(when)), row_id
    except (ValueError, UnicodeError, OverflowError) as exc:
        raise ValueError("invalid page_token") from exc


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every stored value is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class AuditLog:
    """Writes and pages through guard decisions, and keeps the table within its bounds."""

    def __init__(
        self,
        url: str,
        *,
        max_rows: int | None = DEFAULT_MAX_ROWS,
        retention_days: float | None = DEFAULT_RETENTION_DAYS,
        prune_interval_s: float = PRUNE_INTERVAL_S,
    ) -> None:
        """`max_rows` / `retention_days` None: no bound of that kind. Only a writer prunes:
        the pruner starts with the first `record`, so a reader such as `mesh audit` never
        deletes what a router with other bounds keeps."""
        self.engine: AsyncEngine = create_async_engine(url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.max_rows = max_rows
        self.retention_days = retention_days
        self.prune_interval_s = prune_interval_s
        self._written = 0  # rows this log has written, ever
        # Rows in the table as the last prune counted them, plus those this log wrote since:
        # the pruner is woken the moment it may pass max_rows (other writers sharing the table
        # are seen at each prune, and every minute).
        self._rows_estimate = 0
        self._wake = asyncio.Event()
        self._pruner: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: GuardSettings) -> AuditLog:
        """The router's audit log as `router.guards` configures it."""
        return cls(
            settings.resolved_audit_url(),
            max_rows=settings.audit_max_rows,
            retention_days=settings.audit_retention_days,
        )

    async def start(self) -> None:
        ensure_sqlite_dir(self.engine.url.render_as_string(hide_password=False))
        async with self.engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)

    async def close(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        await self.engine.dispose()

    async def _prune_forever(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:  # a locked or unreachable database: try again next round
                log.warning("audit log pruning failed; will retry", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.prune_interval_s)
            self._wake.clear()

    async def prune(self) -> int:
        """Delete rows past the age bound, then the oldest past the row bound; rows deleted."""
        written_before = self._written
        deleted = 0
        table = GuardDecisionRow
        async with self._sessions() as session, session.begin():
            if self.retention_days is not None:
                cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.retention_days)
                result = await session.execute(delete(table).where(table.decided_at < cutoff))
                deleted += int(getattr(result, "rowcount", 0) or 0)
            if self.max_rows is not None:
                rows = int(await session.scalar(select(func.count()).select_from(table)) or 0)
                self._rows_estimate = rows
                if rows > self.max_rows:
                    doomed = rows - int(self.max_rows * LOW_WATER)
                    oldest = (
                        select(table.id)
                        .order_by(table.decided_at.asc(), table.id.asc())
                        .limit(doomed)
                        .scalar_subquery()
                    )
                    result = await session.execute(delete(table).where(table.id.in_(oldest)))
                    removed = int(getattr(result, "rowcount", 0) or 0)
                    deleted += removed
                    self._rows_estimate = rows - removed
        # Rows written while this ran may or may not be in the count: assume they are not.
        self._rows_estimate += self._written - written_before
        if deleted:
            log.info("audit log: deleted %d decisions past its bounds", deleted)
        return deleted

    def _wrote(self, rows: int) -> None:
        """Start the pruner with the first write; wake it once the table may pass max_rows."""
        if self._pruner is None and (self.max_rows is not None or self.retention_days is not None):
            self._pruner = asyncio.create_task(self._prune_forever(), name="audit-prune")
        self._written += rows
        self._rows_estimate += rows
        if self.max_rows is not None and self._rows_estimate > self.max_rows:
            self._wake.set()

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
                findings_json=_findings_json(o),
                content_sha256=digest,
                content=text if store_content else None,
            )
            for o in outcomes
        ]
        if rows:
            async with self._sessions() as session, session.begin():
                session.add_all(rows)
            self._wrote(len(rows))
        return len(rows)

    async def record_policy_change(self, change: PolicyChange) -> None:
        """Store one policy change (never pruned by the decision bounds)."""
        row = PolicyChangeRow(
            id=str(uuid.uuid4()),
            changed_at=change.changed_at or dt.datetime.now(dt.UTC),
            actor=change.actor[:160],
            tenant=change.tenant[:128],
            dry_run=change.dry_run,
            outcome=change.outcome,
            version_before=change.version_before,
            version_after=change.version_after,
            source=change.source[:64],
            reason=change.reason[:500],
        )
        async with self._sessions() as session, session.begin():
            session.add(row)

    async def policy_changes(
        self, *, since: dt.datetime | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[PolicyChange]:
        """Policy changes (API and file), newest first."""
        stmt = select(PolicyChangeRow)
        if since is not None:
            stmt = stmt.where(PolicyChangeRow.changed_at >= _utc(since))
        size = DEFAULT_PAGE_SIZE if limit <= 0 else min(limit, MAX_PAGE_SIZE)
        stmt = stmt.order_by(PolicyChangeRow.changed_at.desc(), PolicyChangeRow.id.desc())
        async with self._sessions() as session:
            rows = list((await session.scalars(stmt.limit(size))).all())
        return [
            PolicyChange(
                actor=r.actor,
                dry_run=r.dry_run,
                outcome=r.outcome,
                version_before=r.version_before,
                version_after=r.version_after,
                tenant=r.tenant,
                source=r.source,
                reason=r.reason,
                changed_at=_utc(r.changed_at),
                id=r.id,
            )
            for r in rows
        ]

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
        cursor = cursor_of(q.page_token)
        if cursor is not None:
            stamp, row_id = cursor
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


def _findings_json(outcome: GuardOutcome) -> str:
    """The findings as stored. A guard that failed carries its error type on its GUARD_ERROR
    finding: a key in the row's JSON rather than a column, so tables written by earlier
    versions are read (and written) as they are, with no migration."""
    findings: list[dict[str, object]] = [
        {"type": f.type, "start": f.start, "end": f.end, "score": f.score}
        for f in outcome.verdict.findings
    ]
    if outcome.error_type:
        for finding in findings:
            if finding["type"] == GUARD_ERROR:
                finding["error_type"] = outcome.error_type
    return json.dumps(findings)


def _decision(row: GuardDecisionRow) -> Decision:
    stored = json.loads(row.findings_json)
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
        findings=tuple(Finding(f["type"], f["start"], f["end"], f["score"]) for f in stored),
        content_sha256=row.content_sha256,
        content=row.content,
        error_type=next((str(f["error_type"]) for f in stored if f.get("error_type")), ""),
    )

"""The local stores stay bounded while the mesh runs (issue 14, item 7).

Spans go through the real pipeline (SDK tracer -> BatchSpanProcessor -> SqliteSpanExporter on
its worker thread) into a real SQLite file, and are read back with `mesh trace`; the audit log
is the real SQLAlchemy/aiosqlite one. Nothing here waits on wall time: the bounds are checked
by size and by row count, and the age bound with spans stamped in the past.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from click.testing import CliRunner
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from sqlalchemy import func, select

from guards.audit import AuditLog, DecisionQuery, GuardDecisionRow
from guards.verdict import Finding, GuardOutcome, Mode, Stage, Verdict
from mesh.telemetry import semconv as sc
from mesh.telemetry.cli import trace_command
from mesh.telemetry.setup import span_store_processor
from mesh.telemetry.span_store import SpanStore, SqliteSpanExporter, StoreBounds

MAX_MB = 1.0
# The bound is checked after each batch, so the file may pass it by about one batch before the
# prune; a batch is at most SPAN_STORE_EXPORT_BATCH (512) spans, ~0.3 MB of these, and page
# granularity and index slack add a little: 40 % over 1 MB covers both.
SLACK = 0.4
PAD = "x" * 400  # about the size of a route span's attributes


def _wal(store: Path) -> int:
    wal = store.with_name(store.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _write_requests(provider: TracerProvider, first: int, count: int) -> None:
    """`count` request traces of four spans each, like a small route: root and three children."""
    tracer = provider.get_tracer("bounds-test")
    for i in range(first, first + count):
        with tracer.start_as_current_span("route", attributes={"pad": PAD}):
            sc.tag_request(f"req-{i}")
            for name in ("guard", "attempt", "settle"):
                with tracer.start_as_current_span(name, attributes={"pad": PAD}):
                    pass
    provider.force_flush()


def test_span_store_stays_within_its_size_bound_and_keeps_the_newest(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    provider = TracerProvider(resource=Resource.create({"service.name": "router"}))
    provider.add_span_processor(span_store_processor(store, retention_hours=None, max_mb=MAX_MB))
    bound = MAX_MB * 1024 * 1024 * (1 + SLACK)

    # A reader in the middle of a transaction holds the WAL: it cannot be checkpointed, so it
    # grows with every batch meanwhile (as under a long `mesh trace` or a slow second process).
    reader = sqlite3.connect(store)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM spans").fetchone()
    _write_requests(provider, 0, 500)
    held_wal = _wal(store)
    reader.rollback()
    reader.close()

    sizes = []
    for round_ in range(1, 8):  # ~6.5 MB of spans in all, 6.5 times the bound
        _write_requests(provider, round_ * 500, 500)
        sizes.append(store.stat().st_size)
    provider.shutdown()

    assert max(sizes) <= bound, [f"{s / 2**20:.2f} MiB" for s in sizes]
    # The WAL grew while held, and was cut back once the reader let go (SQLite alone keeps
    # the -wal file at its largest size forever).
    assert held_wal > 1024 * 1024
    assert _wal(store) < held_wal / 2, (held_wal, _wal(store))

    spans = SpanStore(store)
    assert spans.trace_ids_for_request("req-0") == [], "the oldest traces went first"
    newest = spans.trace_ids_for_request("req-3999")
    assert len(newest) == 1
    assert [s.name for s in spans.trace(newest[0])] == ["route", "guard", "attempt", "settle"]
    # Kept traces are whole: every trace left has its root and its three children.
    with sqlite3.connect(store) as conn:
        counts = {n for (n,) in conn.execute("SELECT COUNT(*) FROM spans GROUP BY trace_id")}
    assert counts == {4}
    result = CliRunner().invoke(trace_command, ["--request", "req-3999", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "route" in result.output and "attempt" in result.output


def test_span_store_prunes_by_age_while_running(tmp_path: Path) -> None:
    """Not only at start: traces that age past the bound go at the next maintenance round."""
    store = tmp_path / "traces.db"
    exporter = SqliteSpanExporter(store, bounds=StoreBounds(max_age_s=3600))
    provider = TracerProvider(resource=Resource.create({"service.name": "node"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("age-test")
    two_hours_ago = time.time_ns() - 2 * 3600 * 10**9
    with tracer.start_as_current_span("fresh"):
        sc.tag_request("fresh-1")
    # A trace that started two hours ago ends now: it was in flight across the first round.
    with tracer.start_as_current_span("old", start_time=two_hours_ago):
        sc.tag_request("old-1")
    spans = SpanStore(store)
    assert spans.trace_ids_for_request("old-1"), "the first round ran before it was written"

    exporter.maintain(force=True)  # the next round (every MAINTENANCE_INTERVAL_S in service)
    assert spans.trace_ids_for_request("old-1") == []
    assert spans.trace_ids_for_request("fresh-1")
    provider.shutdown()


def _block(guard: str) -> list[GuardOutcome]:
    return [GuardOutcome(guard, Stage.INPUT, Mode.ENFORCE, Verdict.block([Finding("X", 0, 1)]))]


async def _rows(audit: AuditLog) -> int:
    async with audit.engine.connect() as conn:
        return int((await conn.scalar(select(func.count()).select_from(GuardDecisionRow))) or 0)


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> bool:
    """Whether `check` holds within timeout_s (the background pruner runs on its own)."""
    for _ in range(int(timeout_s / 0.02)):
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


async def test_audit_log_stays_within_its_row_bound_while_running(tmp_path: Path) -> None:
    """A write past the bound wakes the pruner long before its one-minute round."""
    audit = AuditLog(f"sqlite+aiosqlite:///{tmp_path}/audit.db", max_rows=100)
    await audit.start()
    try:
        for chunk in range(20):
            for i in range(chunk * 20, chunk * 20 + 20):
                await audit.record(
                    _block(f"g{i}"), text="t", tenant="acme", request_id=f"r{i}", policy_version="v"
                )
            assert await _eventually(lambda: _at_most(audit, 100))
        # 400 written; the pruner cut back to 80 (LOW_WATER) whenever a write took it past 100.
        guards = await _guards(audit)
        assert "g399" in guards and "g0" not in guards, "the oldest rows went first"
        assert 80 <= len(guards) <= 100
    finally:
        await audit.close()


async def _add_old_row(audit: AuditLog, days: float) -> None:
    async with audit._sessions() as session, session.begin():
        session.add(
            GuardDecisionRow(
                id="old-row",
                decided_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days),
                request_id="r0",
                tenant="a",
                guard="old",
                stage="input",
                action="block",
                mode="enforce",
                policy_version="v",
                content_sha256="0" * 64,
            )
        )


async def _guards(audit: AuditLog) -> set[str]:
    async with audit.engine.connect() as conn:
        return set((await conn.scalars(select(GuardDecisionRow.guard))).all())


async def _only(audit: AuditLog, guards: set[str]) -> bool:
    return await _guards(audit) == guards


async def _at_most(audit: AuditLog, rows: int) -> bool:
    return await _rows(audit) <= rows


async def test_audit_log_prunes_by_age_and_only_a_writer_prunes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    writer = AuditLog(url, retention_days=30, max_rows=None)
    await writer.start()
    await _add_old_row(writer, days=31)
    # A reader (`mesh audit`, PolicyService) with a shorter bound deletes nothing.
    reader = AuditLog(url, retention_days=1)
    await reader.start()
    await reader.query(DecisionQuery())
    await reader.close()
    assert await _guards(writer) == {"old"}
    try:
        await writer.record(
            _block("new"), text="t", tenant="a", request_id="r1", policy_version="v"
        )
        # The first write started the pruner, whose first round deletes the 31-day-old row.
        assert await _eventually(lambda: _only(writer, {"new"}))
    finally:
        await writer.close()

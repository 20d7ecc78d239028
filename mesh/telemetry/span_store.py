"""A local span store in one SQLite file: the embedded `mesh up` backend behind `mesh trace`.

Every process of the mesh (router, nodes) exports into the same file; WAL mode lets them write
concurrently while `mesh trace` reads. sqlite3 from the standard library is enough here: the
exporter runs on the BatchSpanProcessor's worker thread and writes plain rows, one transaction
per batch. That thread holds the GIL for every line of Python it runs, which the event loop
then waits for, so a row is built with as little Python as possible (`row_of`; measured in
benchmarks/tracing.py against the previous StoredSpan-then-json.dumps path).

The store is bounded while processes run, on that same thread (`StoreBounds`): past the size
bound the oldest traces go, whole, until it is back under LOW_WATER of it; traces that started
before the age bound go at every maintenance round; and the WAL is checkpointed and truncated
then, so neither file grows with uptime. Freed pages are reused, so the file stays near the
bound instead of shrinking (no VACUUM: it would rewrite the whole file under a write lock).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from mesh.telemetry import semconv as sc

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    request_id TEXT,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_request ON spans (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
"""
_INSERT = """
INSERT OR REPLACE INTO spans (trace_id, span_id, parent_id, name, kind, service, start_ns,
    end_ns, status, status_message, attributes, events, request_id)
VALUES """
_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# 13 columns x 64 rows = 832 parameters: under 999, the limit of SQLite builds before 3.32.
ROWS_PER_INSERT = 64


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def _insert_rows(count: int) -> str:
    """INSERT of `count` rows in one statement."""
    return _INSERT + ", ".join([_ROW_PLACEHOLDERS] * count)


_COLUMNS = (
    "trace_id, span_id, parent_id, name, kind, service, start_ns, end_ns, status, "
    "status_message, attributes, events"
)


@dataclass(frozen=True)
class StoredSpan:
    """One finished span as the store keeps it (ids in W3C hex)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    status: str  # UNSET, OK or ERROR
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e6

    def to_json(self) -> dict[str, Any]:
        """The `mesh trace --json` shape of a span."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "kind": self.kind,
            "service": self.service,
            "start_time_unix_nano": self.start_ns,
            "duration_ms": round(self.duration_ms, 3),
            "status": {"code": self.status, "description": self.status_message},
            "attributes": self.attributes,
            "events": self.events,
        }


def from_readable(span: ReadableSpan) -> StoredSpan:
    """Convert an SDK span (what exporters receive) into the stored shape."""
    ctx = span.get_span_context()
    assert ctx is not None
    resource = span.resource.attributes if span.resource else {}
    status = span.status
    return StoredSpan(
        trace_id=format_trace_id(ctx.trace_id),
        span_id=format_span_id(ctx.span_id),
        parent_id=format_span_id(span.parent.span_id) if span.parent else None,
        name=span.name,
        kind=span.kind.name,
        service=str(resource.get(sc.SERVICE_NAME, "unknown")),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        status=status.status_code.name,
        status_message=status.description or "",
        attributes=_jsonable(dict(span.attributes or {})),
        events=[
            {
                "name": e.name,
                "time_unix_nano": e.timestamp,
                "attributes": _jsonable(dict(e.attributes or {})),
            }
            for e in span.events
        ],
    )


def _jsonable(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()}


BUSY_TIMEOUT_MS = 5000
# After a checkpoint SQLite keeps the -wal file at its largest size unless told otherwise.
WAL_SIZE_LIMIT_BYTES = 8 << 20


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the store: WAL so several processes write while one reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    conn.executescript(_SCHEMA)
    return conn


MAINTENANCE_INTERVAL_S = 60.0  # age pruning and WAL truncation; the size is checked per batch
LOW_WATER = 0.8  # a size prune frees this much headroom, so it is not needed again next batch
_CHECKPOINT_BUSY_MS = 100  # a reader holding the WAL: try again next round, do not wait


@dataclass(frozen=True)
class StoreBounds:
    """How big and how old the store may get; None: no bound of that kind."""

    max_bytes: int | None = None
    max_age_s: float | None = None
    maintenance_interval_s: float = MAINTENANCE_INTERVAL_S

    @classmethod
    def of(cls, *, max_mb: float | None, retention_hours: float | None) -> StoreBounds:
        return cls(
            max_bytes=int(max_mb * 1024 * 1024) if max_mb is not None else None,
            max_age_s=retention_hours * 3600 if retention_hours is not None else None,
        )


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages in use (free pages excluded), WAL frames included: two header reads."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * page_size)


_DELETE_TRACES_STARTED_BEFORE = (
    "DELETE FROM spans WHERE trace_id IN (SELECT DISTINCT trace_id FROM spans WHERE start_ns <= ?)"
)


def prune_older_than(conn: sqlite3.Connection, cutoff_ns: int) -> int:
    """Delete every trace with a span that started at or before cutoff_ns; rows deleted."""
    return conn.execute(_DELETE_TRACES_STARTED_BEFORE, (cutoff_ns,)).rowcount


def prune_to_size(conn: sqlite3.Connection, target_bytes: int) -> int:
    """Delete the oldest traces, whole, until about target_bytes are in use; rows deleted.

    Rows are assumed to be of about equal size: the share of rows to go is the share of bytes
    over the target, and the cut falls at the start time of the last of them (the
    spans_by_start index answers it without sorting the table).
    """
    used = used_bytes(conn)
    if used <= target_bytes:
        return 0
    rows = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    if not rows:
        return 0
    doomed = max(1, math.ceil(rows * (1 - target_bytes / used)))
    cut = conn.execute(
        "SELECT start_ns FROM spans ORDER BY start_ns LIMIT 1 OFFSET ?", (min(doomed, rows) - 1,)
    ).fetchone()
    return prune_older_than(conn, cut[0]) if cut else 0


def truncate_wal(conn: sqlite3.Connection) -> bool:
    """Checkpoint the WAL into the database and cut the -wal file to zero bytes.

    A reader in the middle of a transaction holds the WAL; then this gives up after
    _CHECKPOINT_BUSY_MS (False) and the next round tries again.
    """
    conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_BUSY_MS}")
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return not busy


# One encoder, built once: json.dumps with any non-default argument builds a new encoder per call.
_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode
_KIND_NAMES = {kind: kind.name for kind in SpanKind}  # Enum.name is a Python-level property
_STATUS_NAMES = {code: code.name for code in StatusCode}
Row = tuple[Any, ...]


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict of SDK attributes for the JSON encoder (tuples encode as arrays as they are).

    The SDK keeps them in a BoundedAttributes whose own dict is read directly: copying through
    the Mapping protocol (a Python call per key, behind a MappingProxy for spans) was 2.4 µs of
    a route span's row against 0.1 µs (benchmarks/tracing.py probe). Anything else is copied.
    """
    if not attributes:
        return {}
    inner = getattr(attributes, "_dict", None)
    return inner if type(inner) is dict else dict(attributes)


class SqliteSpanExporter(SpanExporter):
    """Writes finished spans to the store; a failed write is logged and dropped, never raised.

    Bounds are kept in `export`, which the BatchSpanProcessor calls on its worker thread: the
    size after every batch (two PRAGMA reads), the age and the WAL every
    `maintenance_interval_s`, the first round with the first batch (never in the constructor,
    which runs wherever telemetry is set up, perhaps on the event loop).
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_hours: float | None = None,
        max_mb: float | None = None,
        bounds: StoreBounds | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.bounds = bounds or StoreBounds.of(max_mb=max_mb, retention_hours=retention_hours)
        self._clock = clock
        self._next_maintenance = float("-inf")
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = connect(path)

    @staticmethod
    def row_of(span: ReadableSpan) -> Row:
        """The store's row for one finished span, straight from the SDK span (no StoredSpan)."""
        ctx = span.context
        parent = span.parent
        # The span's own BoundedAttributes: `span.attributes` wraps it in a MappingProxy.
        attributes = _plain(getattr(span, "_attributes", None) or span.attributes)
        status = span.status
        start_ns = span.start_time or 0
        request_id = attributes.get(sc.MESH_REQUEST_ID)
        events = span.events
        return (
            f"{ctx.trace_id:032x}",
            f"{ctx.span_id:016x}",
            f"{parent.span_id:016x}" if parent is not None else None,
            span.name,
            _KIND_NAMES[span.kind],
            _service(span.resource),
            start_ns,
            span.end_time or start_ns,
            _STATUS_NAMES[status.status_code],
            status.description or "",
            _encode(attributes),
            _encode(
                [
                    {
                        "name": e.name,
                        "time_unix_nano": e.timestamp,
                        "attributes": _plain(e.attributes),
                    }
                    for e in events
                ]
            )
            if events
            else "[]",
            str(request_id) if request_id else None,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """One transaction per batch, ROWS_PER_INSERT rows per INSERT statement.

        This thread and the event loop share the GIL. sqlite3 hands it over around every
        statement step, so `executemany` (one step a row) handed it over once per span. With one
        statement per 64 rows this thread's CPU fell from 59-78 to 29-32 us a span, measured
        beside a busy grpc.aio server (a do-nothing servicer at c8, one span a call, three
        alternating runs each); the whole process's CPU a call moved less than its noise
        (870-914 -> 848-879 us). The loop waits for at most 64 rows' Python (~0.6 ms, under the
        interpreter's 5 ms switch interval), never the whole batch's. A span that cannot be
        stored loses its batch, never the process."""
        try:
            with self._lock:
                if self._conn is None:
                    return SpanExportResult.FAILURE
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for start in range(0, len(spans), ROWS_PER_INSERT):
                        chunk = spans[start : start + ROWS_PER_INSERT]
                        values = [v for span in chunk for v in self.row_of(span)]
                        self._conn.execute(_insert_rows(len(chunk)), values)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
        except Exception as exc:
            log.warning("span store %s: dropped %d spans: %r", self.path, len(spans), exc)
            return SpanExportResult.FAILURE
        self.maintain()
        return SpanExportResult.SUCCESS

    def maintain(self, *, force: bool = False) -> None:
        """Keep the bounds: size now if it is over, the age and the WAL when a round is due.

        Never raises: a store that cannot be pruned now (locked by another process) is pruned
        by a later batch, of this process or another one writing to the same file.
        """
        bounds = self.bounds
        try:
            with self._lock:
                conn = self._conn
                if conn is None:
                    return
                now = self._clock()
                over = bounds.max_bytes is not None and used_bytes(conn) > bounds.max_bytes
                if not (over or force or now >= self._next_maintenance):
                    return
                self._next_maintenance = now + bounds.maintenance_interval_s
                deleted = 0
                if bounds.max_age_s is not None:
                    deleted += prune_older_than(conn, time.time_ns() - int(bounds.max_age_s * 1e9))
                if bounds.max_bytes is not None:
                    deleted += prune_to_size(conn, int(bounds.max_bytes * LOW_WATER))
                truncate_wal(conn)
        except Exception as exc:
            log.warning("span store %s: pruning failed, will retry: %r", self.path, exc)
            return
        if deleted:
            log.debug("span store %s: pruned %d spans", self.path, deleted)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export commits

    def shutdown(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_services: dict[int, tuple[Resource, str]] = {}


def _service(resource: Resource | None) -> str:
    """service.name of a resource, looked up once per resource (one per process, in practice)."""
    if resource is None:
        return "unknown"
    known = _services.get(id(resource))
    if known is not None and known[0] is resource:
        return known[1]
    name = str(resource.attributes.get(sc.SERVICE_NAME, "unknown"))
    if len(_services) >= 64:  # many providers only in tests; keep the cache small anyway
        _services.clear()
    _services[id(resource)] = (resource, name)
    return name


class TraceNotFound(LookupError):
    """No trace matches the id, prefix or request id."""


class SpanStore:
    """Read side of the store: what `mesh trace` asks."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no span store at {path} (has a mesh process run here?)")
        self.path = path

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        with closing(connect(self.path)) as conn:
            yield conn

    def trace(self, trace_id: str) -> list[StoredSpan]:
        """All spans of one trace, by full id or an unambiguous prefix (like a git hash)."""
        trace_id = trace_id.strip().lower()
        if not trace_id or len(trace_id) > 32 or set(trace_id) - set("0123456789abcdef"):
            raise TraceNotFound(f"{trace_id!r} is not a trace id (32 hex digits, or a prefix)")
        with self._conn() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT trace_id FROM spans WHERE trace_id LIKE ? LIMIT 2",
                    (trace_id + "%",),
                )
            ]
            if not ids:
                raise TraceNotFound(f"no trace {trace_id}")
            if len(ids) > 1:
                raise TraceNotFound(f"trace id prefix {trace_id} is ambiguous")
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_ns",  # noqa: S608
                (ids[0],),
            ).fetchall()
        return [_row_to_span(r) for r in rows]

    def trace_ids_for_request(self, request_id: str) -> list[str]:
        """Traces that carry mesh.request_id = request_id, newest first."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT trace_id, MIN(start_ns) AS t FROM spans WHERE request_id = ? "
                "GROUP BY trace_id ORDER BY t DESC",
                (request_id,),
            ).fetchall()
        return [r[0] for r in rows]

    def last_trace_ids(self, n: int) -> list[str]:
        """The n traces that started last, newest first."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT trace_id, MIN(start_ns) AS t FROM spans GROUP BY trace_id "
                "ORDER BY t DESC LIMIT ?",
                (n,),
            ).fetchall()
        return [r[0] for r in rows]


def _row_to_span(row: Sequence[Any]) -> StoredSpan:
    return StoredSpan(
        trace_id=row[0],
        span_id=row[1],
        parent_id=row[2],
        name=row[3],
        kind=row[4],
        service=row[5],
        start_ns=row[6],
        end_ns=row[7],
        status=row[8],
        status_message=row[9],
        attributes=json.loads(row[10]),
        events=json.loads(row[11]),
    )

"""Audit log: only non-allow verdicts, content hashed unless opted in, filters and pages."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from guards.audit import AuditLog, DecisionQuery, content_sha256
from guards.policy_service import _decision_proto
from guards.verdict import GUARD_ERROR, Finding, GuardOutcome, Mode, Stage, Verdict
from mesh.v1 import types_pb2


def outcome(guard: str, verdict: Verdict, mode: Mode = Mode.ENFORCE) -> GuardOutcome:
    return GuardOutcome(guard, Stage.INPUT, mode, verdict)


async def test_records_non_allow_and_monitor(audit_log: AuditLog) -> None:
    written = await audit_log.record(
        [
            outcome("a", Verdict.allow()),
            outcome("b", Verdict.block([Finding("X", 0, 3)])),
            outcome("c", Verdict.flag([Finding("Y", 1, 2)]), Mode.MONITOR),
        ],
        text="secret text",
        tenant="t1",
        request_id="r1",
        policy_version="v1",
    )
    assert written == 2
    rows, token = await audit_log.query(DecisionQuery())
    assert token == "" and {r.guard for r in rows} == {"b", "c"}
    row = next(r for r in rows if r.guard == "c")
    assert (row.mode, row.action, row.policy_version, row.tenant) == ("monitor", "flag", "v1", "t1")
    assert row.content is None and row.content_sha256 == content_sha256("secret text")
    assert row.findings == (Finding("Y", 1, 2),)


async def test_a_guard_that_could_not_decide_is_audited_with_its_error_type(
    audit_log: AuditLog,
) -> None:
    failed = GuardOutcome(
        "flaky",
        Stage.OUTPUT,
        Mode.ENFORCE,
        Verdict.flag([Finding(GUARD_ERROR, 0, 0, 1.0)]),
        error="RuntimeError: scripted",
        error_type="RuntimeError",
    )
    await audit_log.record(
        [failed, outcome("b", Verdict.block([Finding("X", 0, 3)]))],
        text="t",
        tenant="t",
        request_id="r",
        policy_version="v",
    )
    rows, _ = await audit_log.query(DecisionQuery())
    by_guard = {r.guard: r for r in rows}
    assert by_guard["flaky"].error_type == "RuntimeError"
    assert by_guard["flaky"].findings == (Finding(GUARD_ERROR, 0, 0, 1.0),)
    assert by_guard["b"].error_type == ""
    proto = _decision_proto(by_guard["flaky"])
    assert proto.verdict.error_type == "RuntimeError"
    assert proto.verdict.action == types_pb2.GUARD_ACTION_FLAG
    assert _decision_proto(by_guard["b"]).verdict.error_type == ""


async def test_content_only_when_opted_in(audit_log: AuditLog) -> None:
    await audit_log.record(
        [outcome("a", Verdict.flag([]))],
        text="kept",
        tenant="t",
        request_id="r",
        policy_version="v",
        store_content=True,
    )
    rows, _ = await audit_log.query(DecisionQuery(guard="a"))
    assert rows[0].content == "kept"


async def test_filters_and_pagination(audit_log: AuditLog) -> None:
    for i in range(7):
        await audit_log.record(
            [outcome(f"g{i % 2}", Verdict.flag([]))],
            text=str(i),
            tenant="even" if i % 2 == 0 else "odd",
            request_id=str(i),
            policy_version="v",
        )
    seen: list[str] = []
    token = ""
    while True:
        rows, token = await audit_log.query(DecisionQuery(page_size=3, page_token=token))
        seen += [r.request_id for r in rows]
        if not token:
            break
    assert sorted(seen) == [str(i) for i in range(7)] and len(set(seen)) == 7
    assert seen[0] == "6"  # newest first
    rows, _ = await audit_log.query(DecisionQuery(tenant="odd"))
    assert {r.request_id for r in rows} == {"1", "3", "5"}
    rows, _ = await audit_log.query(DecisionQuery(guard="g0"))
    assert len(rows) == 4
    rows, _ = await audit_log.query(
        DecisionQuery(since=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
    )
    assert rows == []
    with pytest.raises(ValueError, match="page_token"):
        await audit_log.query(DecisionQuery(page_token="!!"))


def test_mesh_audit_reads_where_the_router_writes_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The router's audit file is GuardSettings' default; `mesh audit` without --db reads it.
    from click.testing import CliRunner

    from guards.cli import audit
    from mesh.config import GuardSettings

    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path))

    async def write() -> None:
        log = AuditLog(GuardSettings().resolved_audit_url())
        await log.start()
        try:
            await log.record(
                [outcome("pii", Verdict.block([]))],
                text="t",
                tenant="acme",
                request_id="r-default-db",
                policy_version="v",
            )
        finally:
            await log.close()

    asyncio.run(write())
    result = CliRunner().invoke(audit, [])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "guard_audit.db").exists() and "r-default-db" in result.output

"""`mesh trace` rendering: a tree an SRE reads at a glance, and the --json shape."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mesh.cli import cli
from mesh.telemetry import semconv as sc
from mesh.telemetry.span_store import StoredSpan
from mesh.telemetry.trace_view import build_tree, render_trace, spans_json

T = "0af7651916cd43dd8448eb211c80319c"
MS = 1_000_000


def _span(
    span_id: str, parent: str | None, name: str, start: float, end: float, **kw: object
) -> StoredSpan:
    attrs = kw.pop("attributes", {})
    events = kw.pop("events", [])
    assert isinstance(attrs, dict) and isinstance(events, list)
    return StoredSpan(
        trace_id=T,
        span_id=span_id,
        parent_id=parent,
        name=name,
        kind=str(kw.pop("kind", "INTERNAL")),
        service=str(kw.pop("service", "router")),
        start_ns=int(start * MS),
        end_ns=int(end * MS),
        status=str(kw.pop("status", "UNSET")),
        status_message=str(kw.pop("message", "")),
        attributes=attrs,
        events=events,
    )


def _guard_event(guard: str, ms: float, **attributes: object) -> dict[str, object]:
    return {
        "name": sc.GUARD_EVENT,
        "time_unix_nano": 0,
        "attributes": {sc.GEN_AI_GUARDIAN_NAME: guard, sc.MESH_GUARD_DURATION_MS: ms, **attributes},
    }


SPANS = [
    _span(
        "a1",
        None,
        "/mesh.v1.InferenceService/Generate",
        0,
        42.5,
        kind="SERVER",
        attributes={sc.MESH_REQUEST_ID: "req-7"},
        # A stream's notable chunk check, recorded on the span current at the time.
        events=[
            _guard_event(
                "secrets",
                0.2,
                **{
                    sc.GEN_AI_SECURITY_DECISION_TYPE: "modify",
                    sc.GEN_AI_SECURITY_FINDING_CATEGORIES: ["AWS_ACCESS_KEY"],
                    sc.MESH_GUARD_STAGE: "output",
                    sc.MESH_GUARD_CHUNK_OFFSET: 128,
                },
            )
        ],
    ),
    _span(
        "a2",
        "a1",
        "apply_guardrail llm_input",
        0.5,
        1.0,
        attributes={
            sc.MESH_GUARD_COUNT: 3,
            sc.GEN_AI_SECURITY_DECISION_TYPE: "modify",
            sc.MESH_GUARD_ACTION: "redact",
            sc.GEN_AI_SECURITY_FINDING_CATEGORIES: ["EMAIL_ADDRESS"],
        },
        events=[
            _guard_event(
                "pii",
                0.12,
                **{
                    sc.GEN_AI_SECURITY_DECISION_TYPE: "modify",
                    sc.GEN_AI_SECURITY_FINDING_CATEGORIES: ["EMAIL_ADDRESS"],
                },
            ),
            _guard_event(
                "topics",
                0.03,
                **{
                    sc.GEN_AI_SECURITY_DECISION_TYPE: "allow",
                    sc.MESH_GUARD_ACTION: "block",
                    sc.MESH_GUARD_MODE: "monitor",
                    sc.GEN_AI_SECURITY_FINDING_CATEGORIES: ["TOPIC"],
                },
            ),
            _guard_event(
                "toxicity",
                2.5,
                **{sc.GEN_AI_SECURITY_DECISION_TYPE: "allow", sc.ERROR_TYPE: "timeout"},
            ),
            {"name": "exception", "time_unix_nano": 0, "attributes": {"exception.type": "X"}},
        ],
    ),
    _span(
        "a3",
        "a1",
        "route cheapest",
        1.0,
        42.0,
        attributes={
            sc.MESH_ROUTE_NODE: "gpu-1",
            sc.MESH_ROUTE_CANDIDATES: 3,
            sc.MESH_ROUTE_ACTUAL_COST: 0.000123,
            sc.MESH_ROUTE_REASON: "lowest cost",
        },
    ),
    _span(
        "a4",
        "a3",
        "chat smollm2",
        1.5,
        11.5,
        kind="CLIENT",
        status="ERROR",
        message="UNAVAILABLE: node down",
        attributes={
            sc.MESH_ROUTE_ATTEMPT: 1,
            sc.ERROR_TYPE: "UNAVAILABLE",
            sc.MESH_ROUTE_NODE: "gpu-1",
        },
    ),
    _span(
        "a5",
        "a3",
        "chat gpt-4o-mini",
        12.0,
        41.0,
        kind="CLIENT",
        attributes={
            sc.MESH_ROUTE_ATTEMPT: 2,
            sc.MESH_ROUTE_NODE: "openai-bridge",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 31,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 9,
            sc.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
        },
    ),
    _span(
        "b1",
        "a5",
        "/mesh.v1.InferenceService/Generate",
        13.0,
        40.0,
        kind="SERVER",
        service="bridge",
        status="OK",
    ),
]


def test_tree_reads_at_a_glance() -> None:
    text = render_trace(SPANS)
    assert text.splitlines() == [
        f"trace {T}  42.5 ms  6 spans  services: bridge, router  1 error",
        "/mesh.v1.InferenceService/Generate  [router]  server  +0.00 ms  42.5 ms  request=req-7",
        "│  · secrets  0.20 ms  decision=modify  findings=AWS_ACCESS_KEY  stage=output  "
        "chunk_offset=128",
        "├─ apply_guardrail llm_input  +0.50 ms  0.50 ms  guards=3  decision=modify  "
        "action=redact  findings=EMAIL_ADDRESS",
        "│     · pii  0.12 ms  decision=modify  findings=EMAIL_ADDRESS",
        "│     · topics  0.03 ms  decision=allow  action=block  mode=monitor  findings=TOPIC",
        "│     · toxicity  2.5 ms  decision=allow  error=timeout",
        "└─ route cheapest  +1.0 ms  41.0 ms  node=gpu-1  candidates=3  cost=$0.000123  "
        'reason="lowest cost"',
        "   ├─ chat smollm2  client  +1.5 ms  10.0 ms  ERROR UNAVAILABLE: node down  attempt=1  "
        "error=UNAVAILABLE",
        "   └─ chat gpt-4o-mini  client  +12.0 ms  29.0 ms  tokens=31→9  node=openai-bridge  "
        "attempt=2  finish=stop",
        "      └─ /mesh.v1.InferenceService/Generate  [bridge]  server  +13.0 ms  27.0 ms  ok",
    ]


def test_an_http_front_request_shows_the_status_its_client_saw() -> None:
    spans = [
        _span(
            "h1",
            None,
            "POST /v1/chat/completions",
            0,
            9.0,
            kind="SERVER",
            attributes={
                sc.MESH_REQUEST_ID: "req-h",
                sc.HTTP_REQUEST_METHOD: "POST",
                sc.HTTP_RESPONSE_STATUS_CODE: 403,
            },
        ),
        _span(
            "h2", "h1", "apply_guardrail llm_input", 0.5, 1.0, attributes={sc.MESH_GUARD_COUNT: 4}
        ),
    ]
    lines = render_trace(spans).splitlines()
    assert lines[1] == (
        "POST /v1/chat/completions  [router]  server  +0.00 ms  9.0 ms  request=req-h  http=403"
    )
    assert "http=" not in lines[2]


def test_orphans_become_roots_and_json_keeps_everything() -> None:
    orphan = _span("c1", "gone", "late span", 50, 51, service="node")
    roots = build_tree([*SPANS, orphan])
    assert [r.span.span_id for r in roots] == ["a1", "c1"]
    data = spans_json(SPANS)
    assert [d["span_id"] for d in data] == ["a1", "a2", "a3", "a4", "a5", "b1"]
    assert data[3]["status"] == {"code": "ERROR", "description": "UNAVAILABLE: node down"}
    assert data[5]["parent_id"] == "a5" and data[5]["service"] == "bridge"


def test_cli_errors_are_plain_sentences(tmp_path: Path) -> None:
    # Through the `mesh` group: its error boundary turns a missing store into one line.
    runner = CliRunner()
    missing = runner.invoke(cli, ["trace", "--store", str(tmp_path / "none.db")])
    assert missing.exit_code == 1 and missing.stderr.startswith("mesh: no span store")
    both = runner.invoke(cli, ["trace", "abc", "--last", "2", "--store", str(tmp_path / "x")])
    assert both.exit_code == 2 and "one of" in both.output
    json.dumps(spans_json(SPANS))  # serialisable as is


def test_an_allowed_guard_chain_event_shows_every_guard_and_its_time() -> None:
    from mesh.telemetry.trace_view import _allowed_chain_event

    line = _allowed_chain_event(
        {
            sc.MESH_GUARD_STAGE: "input",
            sc.MESH_GUARD_NAMES: ["secrets", "pii"],
            sc.MESH_GUARD_DURATIONS_MS: [0.031, 0.02],
        }
    )
    assert line.startswith("· guards input: allow") and "secrets" in line and "pii" in line

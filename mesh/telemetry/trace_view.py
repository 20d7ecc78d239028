"""A trace as a tree in the terminal, for an SRE reading it at a glance.

One line per span: name, service (when it changes, i.e. at a process hop), kind for RPC hops,
start offset from the trace start, duration, status, then the few attributes that explain the
request (route decision, model, tokens, cost, guard decision). A guard-chain span's per-guard
events follow it, one `· guard` line each (a stream's notable chunk checks likewise under the
span they were recorded on). `spans_json` is the machine-readable form behind
`mesh trace --json`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from mesh.telemetry import semconv as sc
from mesh.telemetry.span_store import StoredSpan


def _money(value: Any) -> str:
    return f"${float(value):.6f}".rstrip("0").rstrip(".") if float(value) else "$0"


def _seconds_as_ms(value: Any) -> str:
    return _duration(float(value) * 1000)


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    text = str(value)
    return f'"{text}"' if " " in text else text


# (attribute, label, formatter): the order is the order on the line.
_KEY_ATTRIBUTES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    (sc.MESH_REQUEST_ID, "request", _plain),
    (sc.MESH_TENANT, "tenant", _plain),
    (sc.MESH_ROUTE_NODE, "node", _plain),
    (sc.MESH_ROUTE_MODEL, "model", _plain),
    (sc.GEN_AI_PROVIDER_NAME, "provider", _plain),
    (sc.MESH_ROUTE_CANDIDATES, "candidates", _plain),
    (sc.MESH_ROUTE_ATTEMPT, "attempt", _plain),
    (sc.MESH_ROUTE_ATTEMPTS, "attempts", _plain),
    (sc.MESH_ROUTE_CACHE_HIT, "cache_hit", _plain),
    (sc.GEN_AI_RESPONSE_MODEL, "answered_by", _plain),
    (sc.GEN_AI_RESPONSE_FINISH_REASONS, "finish", _plain),
    (sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, "ttfc", _seconds_as_ms),
    (sc.MESH_ROUTE_ESTIMATED_COST, "est", _money),
    (sc.MESH_ROUTE_ACTUAL_COST, "cost", _money),
    (sc.MESH_ROUTE_BASELINE_COST, "baseline", _money),
    (sc.MESH_GUARD_COUNT, "guards", _plain),
    (sc.GEN_AI_SECURITY_DECISION_TYPE, "decision", _plain),
    (sc.MESH_GUARD_ACTION, "action", _plain),
    (sc.GEN_AI_SECURITY_FINDING_CATEGORIES, "findings", _plain),
    (sc.GEN_AI_SECURITY_POLICY_VERSION, "policy_version", _plain),
    (sc.ERROR_TYPE, "error", _plain),
    (sc.MESH_ROUTE_REASON, "reason", _plain),
)


_MAX_MESSAGE = 72  # the full description is in --json


def _duration(ms: float) -> str:
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


@dataclass
class SpanNode:
    """A span and its children, children in start order."""

    span: StoredSpan
    children: list[SpanNode] = field(default_factory=list)


def build_tree(spans: Sequence[StoredSpan]) -> list[SpanNode]:
    """Roots of the trace; a span whose parent never arrived becomes a root of its own."""
    nodes = {s.span_id: SpanNode(s) for s in sorted(spans, key=lambda s: s.start_ns)}
    roots: list[SpanNode] = []
    for node in nodes.values():
        parent = nodes.get(node.span.parent_id or "")
        (parent.children if parent is not None else roots).append(node)
    return roots


def _attributes(span: StoredSpan, parent: StoredSpan | None) -> str:
    attrs = span.attributes
    parts: list[str] = []
    tokens_in = attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS)
    tokens_out = attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)
    if tokens_in is not None or tokens_out is not None:
        parts.append(
            f"tokens={tokens_in if tokens_in is not None else '?'}"
            f"→{tokens_out if tokens_out is not None else '?'}"
        )
    for key, label, fmt in _KEY_ATTRIBUTES:
        if key not in attrs:
            continue
        value = attrs[key]
        if parent is not None and parent.attributes.get(key) == value:
            continue  # said once on the parent; children repeat only what changes
        if key == sc.GEN_AI_RESPONSE_MODEL and value == attrs.get(sc.GEN_AI_REQUEST_MODEL):
            continue
        parts.append(f"{label}={fmt(value)}")
    code = attrs.get(sc.RPC_GRPC_STATUS_CODE)
    if code and sc.ERROR_TYPE not in attrs:
        parts.append(f"grpc_code={code}")
    http_status = attrs.get(sc.HTTP_RESPONSE_STATUS_CODE)
    if http_status:  # the HTTP front's server span: 200, or the error status a client saw
        parts.append(f"http={http_status}")
    return "  ".join(parts)


def _guard_event(attributes: dict[str, Any]) -> str:
    """`· pii  0.05 ms  decision=modify  action=redact  findings=EMAIL_ADDRESS`: the mesh's
    action only where the decision does not already say it (redact, flag, monitor mode)."""
    name = attributes.get(sc.GEN_AI_GUARDIAN_NAME, "?")
    parts = [f"· {name}"]
    duration = attributes.get(sc.MESH_GUARD_DURATION_MS)
    if duration is not None:
        parts.append(_duration(float(duration)))
    decision = attributes.get(sc.GEN_AI_SECURITY_DECISION_TYPE)
    action = attributes.get(sc.MESH_GUARD_ACTION)
    if decision is not None:
        parts.append(f"decision={decision}")
    if action is not None and action != decision:
        parts.append(f"action={action}")
    mode = attributes.get(sc.MESH_GUARD_MODE)
    if mode and mode != "enforce":
        parts.append(f"mode={mode}")
    for key, label in (
        (sc.GEN_AI_SECURITY_FINDING_CATEGORIES, "findings"),
        (sc.ERROR_TYPE, "error"),
        (sc.MESH_GUARD_STAGE, "stage"),
        (sc.MESH_GUARD_CHUNK_OFFSET, "chunk_offset"),
    ):
        if key in attributes:
            parts.append(f"{label}={_plain(attributes[key])}")
    return "  ".join(parts)


def _allowed_chain_event(attributes: dict[str, Any]) -> str:
    """`· guards input: allow  secrets 0.03 ms, pii 0.02 ms, ...`: a chain run where every
    guard let the text through, recorded as one event instead of a span."""
    names = attributes.get(sc.MESH_GUARD_NAMES) or ()
    durations = attributes.get(sc.MESH_GUARD_DURATIONS_MS) or ()
    runs = ", ".join(
        f"{name} {_duration(float(ms))}" for name, ms in zip(names, durations, strict=False)
    )
    stage = attributes.get(sc.MESH_GUARD_STAGE, "?")
    return f"· guards {stage}: allow  {runs}"


def _event_lines(span: StoredSpan, color: bool) -> list[str]:
    lines = []
    for event in span.events:
        name = event.get("name")
        attributes = event.get("attributes") or {}
        if name == sc.GUARD_EVENT:
            text = _guard_event(attributes)
        elif str(name).startswith(sc.OPERATION_APPLY_GUARDRAIL):
            text = _allowed_chain_event(attributes)
        else:
            continue
        lines.append(click.style(text, dim=True) if color else text)
    return lines


def _status(span: StoredSpan, color: bool) -> str:
    if span.status == "ERROR":
        message = span.status_message
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 1] + "…"
        text = f"ERROR {message}".strip()
        return click.style(text, fg="red", bold=True) if color else text
    if span.status == "OK":
        return click.style("ok", fg="green") if color else "ok"
    return ""


def _line(span: StoredSpan, parent: StoredSpan | None, origin_ns: int, color: bool) -> str:
    name = click.style(span.name, bold=True) if color else span.name
    pieces = [name]
    if parent is None or parent.service != span.service:
        service = f"[{span.service}]"
        pieces.append(click.style(service, fg="cyan") if color else service)
    if span.kind in ("SERVER", "CLIENT"):
        pieces.append(span.kind.lower())
    offset = f"+{_duration((span.start_ns - origin_ns) / 1e6)}"
    pieces.append(f"{offset}  {_duration(span.duration_ms)}")
    status = _status(span, color)
    if status:
        pieces.append(status)
    attributes = _attributes(span, parent)
    if attributes:
        pieces.append(click.style(attributes, dim=True) if color else attributes)
    return "  ".join(pieces)


def render_trace(spans: Sequence[StoredSpan], *, color: bool = False) -> str:
    """The whole trace: a header line, then the span tree."""
    if not spans:
        return "(empty trace)"
    origin = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    services = sorted({s.service for s in spans})
    errors = sum(1 for s in spans if s.status == "ERROR")
    header = (
        f"trace {spans[0].trace_id}  {_duration((end - origin) / 1e6)}  {len(spans)} spans  "
        f"services: {', '.join(services)}"
    )
    if errors:
        header += f"  {errors} error{'s' if errors > 1 else ''}"
    lines = [click.style(header, bold=True) if color else header]

    def walk(
        node: SpanNode, parent: StoredSpan | None, prefix: str, last: bool, root: bool
    ) -> None:
        branch = "" if root else ("└─ " if last else "├─ ")
        lines.append(prefix + branch + _line(node.span, parent, origin, color))
        child_prefix = prefix if root else prefix + ("   " if last else "│  ")
        event_prefix = child_prefix + ("│  " if node.children else "   ")
        lines.extend(event_prefix + text for text in _event_lines(node.span, color))
        for i, child in enumerate(node.children):
            walk(child, node.span, child_prefix, i == len(node.children) - 1, False)

    for root in build_tree(spans):
        walk(root, None, "", True, True)
    return "\n".join(lines)


def spans_json(spans: Sequence[StoredSpan]) -> list[dict[str, Any]]:
    """The spans of one trace in start order, as plain data."""
    return [s.to_json() for s in sorted(spans, key=lambda s: s.start_ns)]

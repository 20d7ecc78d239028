"""Exception events leave the process without stack traces or messages that may quote content.

opentelemetry-instrumentation-grpc records every exception that leaves a handler with
`span.record_exception`: its message and a full stack trace, chained exceptions included.
Every mesh error ends a call through `abort_with_status`, whose AbortError is raised while
the original error is handled, so the trace quotes that error too, and any exception's
message may quote a prompt, a model name or whatever else the caller sent. The package has no
switch for this, so every span processor is wrapped: a span with an exception event reaches
its exporters with the event cut down to the exception type, plus the message when the mesh
marked it caller-safe (`semconv._record_failure`: a MeshError's message and reason).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor

from mesh.telemetry import semconv as sc

# Kept on every exception event; the message only beside the mesh's caller-safe mark.
_KEPT = frozenset({sc.EXCEPTION_TYPE, sc.MESH_ERROR_REASON, "exception.escaped"})


def _safe_event(event: Event) -> Event:
    if event.name != sc.EXCEPTION_EVENT:
        return event
    attributes = event.attributes or {}
    kept = {k: v for k, v in attributes.items() if k in _KEPT}
    if sc.MESH_ERROR_REASON in attributes and sc.EXCEPTION_MESSAGE in attributes:
        kept[sc.EXCEPTION_MESSAGE] = attributes[sc.EXCEPTION_MESSAGE]
    return Event(event.name, kept, timestamp=event.timestamp)


def redacted(span: ReadableSpan) -> ReadableSpan:
    """The span itself when it has no exception event (nearly all); else a copy without them."""
    events: Sequence[Event] = span.events
    if not any(e.name == sc.EXCEPTION_EVENT for e in events):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=[_safe_event(e) for e in events],
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingProcessor(SpanProcessor):
    """Hands `inner` every finished span with its exception events made safe (`redacted`)."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(redacted(span))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

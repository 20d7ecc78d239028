"""Structured logs that carry the current trace and span ids, so a log line leads to its trace.

JSON lines by default (python-json-logger); a readable text form for a terminal. Calling
`configure_logging` again replaces the handler it installed instead of adding a second one, and
a plain stderr handler (`logging.basicConfig`, as the CLI sets up before a server starts) gives
way too: otherwise every line would reach stderr twice, once without its trace ids.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id
from pythonjsonlogger.json import JsonFormatter

_MARK = "_mesh_telemetry_handler"
# Libraries that log every request at INFO: httpx writes "HTTP Request: POST ... 200 OK" for
# each call a bridge makes through the openai/anthropic SDKs - an access log nobody asked for,
# and 3 % of a bridge's CPU (py-spy, fake upstream, one JSON line per call). Their warnings
# still show; at DEBUG everything does.
_PER_REQUEST_LOGGERS = ("httpx", "httpcore")
_TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s span=%(span_id)s] %(message)s"
)


class TraceContextFilter(logging.Filter):
    """Adds trace_id, span_id (W3C hex, empty outside a span) and service to every record."""

    def __init__(self, service_name: str | None = None) -> None:
        super().__init__()
        self.service_name = service_name

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format_trace_id(ctx.trace_id) if ctx.is_valid else ""
        record.span_id = format_span_id(ctx.span_id) if ctx.is_valid else ""
        if self.service_name is not None:
            record.service = self.service_name
        return True


def _replaced_by(old: logging.Handler, new: logging.StreamHandler[TextIO]) -> bool:
    if getattr(old, _MARK, False):
        return True
    # Exactly a StreamHandler (not a subclass such as a test's capture handler) on our stream.
    return (
        type(old) is logging.StreamHandler
        and new.stream in (sys.stderr, sys.__stderr__)
        and getattr(old, "stream", None) in (sys.stderr, sys.__stderr__)
    )


def configure_logging(
    level: str | int = "INFO",
    *,
    json: bool = True,
    service_name: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install one root handler (stderr by default) and return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter(service_name))
    if json:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if _replaced_by(h, handler)]:
        root.removeHandler(old)
        if getattr(old, _MARK, False):
            old.close()  # ours; a basicConfig handler's stream is stderr itself: left open
    root.addHandler(handler)
    root.setLevel(level)
    quiet = root.getEffectiveLevel() > logging.DEBUG
    for name in _PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
    return handler

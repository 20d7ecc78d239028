"""What one generation on a serving node cost in time and tokens, recorded once however it ends.

A node's servicer wraps each RPC in `observe_generation`; the recorder it yields learns the
request id, the first token and the usage on the way, and on exit (answer, error, cancel)
records duration, time to first token, tokens and the request's status through MeshMetrics,
then writes one access-log line inside the request's span, so the line carries its trace id.
Nothing here can fail the request: MeshMetrics never raises and the rest is guarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from mesh.telemetry import semconv as sc
from mesh.telemetry.metrics import ROLE_NODE, MeshMetrics
from mesh.telemetry.safety import never_raises, safe_invoke

log = logging.getLogger("mesh.telemetry.requests")


def status_of(exc: BaseException) -> str:
    """The status code name a failed handler ends its call with."""
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "CANCELLED"  # the caller went away or its deadline passed
    code = sc.code_of(exc)
    # The error boundary answers INTERNAL for any exception that is not a MeshError.
    return "INTERNAL" if code == "UNKNOWN" else code


@dataclass
class GenerationRecorder:
    """Facts about one generation, filled in as the request runs."""

    metrics: MeshMetrics | None
    provider: str
    model: str
    node: str
    request_id: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    status: str | None = None

    @never_raises
    def first_token(self) -> None:
        """The first generated text left the engine (call on every chunk; counts once)."""
        if self.first_token_s is not None:
            return
        self.first_token_s = time.perf_counter() - self.started
        if self.metrics is not None:
            self.metrics.record_time_to_first_token(
                self.first_token_s, provider=self.provider, model=self.model, node=self.node
            )

    @never_raises
    def usage(self, *, input_tokens: int, output_tokens: int) -> None:
        """The engine's own token counts for this generation."""
        self.input_tokens, self.output_tokens = input_tokens, output_tokens

    @never_raises
    def finish(self, status: str) -> None:
        """Record everything once; later calls are ignored."""
        if self.status is not None:
            return
        self.status = status
        seconds = time.perf_counter() - self.started
        metrics = self.metrics
        if metrics is not None:
            if self.input_tokens is not None and self.output_tokens is not None:
                metrics.record_tokens(
                    input_tokens=self.input_tokens,
                    output_tokens=self.output_tokens,
                    provider=self.provider,
                    request_model=self.model,
                    response_model=self.model,
                    node=self.node,
                    role=ROLE_NODE,
                )
            metrics.record_operation_duration(
                seconds,
                provider=self.provider,
                request_model=self.model,
                response_model=self.model if status == "OK" else None,
                error_type=None if status == "OK" else status,
                node=self.node,
                role=ROLE_NODE,
            )
            metrics.count_request(status=status, model=self.model, node=self.node, role=ROLE_NODE)
        # Ids, counts and timings only: never prompt or completion text.
        log.info(
            "request %s on node %s: %s in %.3fs, %s input / %s output tokens",
            self.request_id or "-",
            self.node,
            status,
            seconds,
            self.input_tokens if self.input_tokens is not None else "-",
            self.output_tokens if self.output_tokens is not None else "-",
            extra={
                "request_id": self.request_id,
                "node": self.node,
                "model": self.model,
                "status": status,
                "duration_s": round(seconds, 6),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
            },
        )


@contextmanager
def observe_generation(
    metrics: MeshMetrics | None, *, provider: str, model: str, node: str
) -> Iterator[GenerationRecorder]:
    """Wrap one RPC's work; the status is OK unless an exception leaves the block."""
    recorder = GenerationRecorder(metrics, provider, model, node)
    try:
        yield recorder
    except BaseException as exc:
        recorder.finish(safe_invoke(status_of, exc) or "INTERNAL")
        raise
    recorder.finish("OK")

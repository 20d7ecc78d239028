"""One request in flight, as every stage of the router's pipeline sees it.

Built once at the edge (mesh.router.edge: identity, validated request, request id, deadline)
and passed to each stage as an explicit argument. An argument rather than a contextvar because
the stream path crosses `yield` points where grpc.aio may resume the handler in another context
copy, and because a stage's inputs are then visible in its signature and in tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from mesh.contract.errors import DeadlineExceeded
from mesh.router.auth import Principal
from mesh.v1 import inference_pb2

if TYPE_CHECKING:
    from guards.guarded_request import GuardedRequest
    from guards.verdict import ChainResult
    from mesh.router.accounting import Hold
    from mesh.router.cache import CacheHit, CacheKey
    from mesh.router.decision import RouteDecision
    from mesh.router.pipeline.attempts import Attempts
    from mesh.router.pipeline.plan import Plan

GenerationRequest: TypeAlias = "inference_pb2.GenerateRequest | inference_pb2.GenerateStreamRequest"


@dataclass(eq=False, slots=True)
class RequestContext:
    """What is known about one request; each stage fills in its part."""

    request_id: str
    principal: Principal
    request: GenerationRequest  # validated at the edge; input redaction replaces it
    stream: bool
    deadline: float  # time.monotonic() seconds
    started: float = field(default_factory=time.perf_counter)
    guards: GuardedRequest | None = None  # the guard policy snapshot of this request
    input_result: ChainResult | None = None
    cache_key: CacheKey | None = None
    cache_hit: CacheHit | None = None  # the answer is served from the cache
    plan: Plan | None = None
    decision: RouteDecision | None = None
    hold: Hold | None = None
    attempts: Attempts | None = None

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    def remaining(self) -> float:
        """Seconds left before the caller's deadline (DeadlineExceeded once it passed)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before an upstream answered")
        return left

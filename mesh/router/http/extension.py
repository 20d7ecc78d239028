"""What the mesh adds to an answer in any wire format: the `mesh` object and x-mesh-* headers.

They carry what a gRPC caller reads in RouteInfo and the guard verdicts: where the request went
and why, what it cost against the baseline, what the guards decided. They are written field by
field: json_format.MessageToDict took 72 us for a RouteInfo with three candidates and 59 us for
three verdicts (measured here), more than the rest of the door's work on a request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mesh.config import tier_name
from mesh.router.pipeline.context import RequestContext
from mesh.v1 import types_pb2

_STAGES = {types_pb2.GUARD_STAGE_INPUT: "input", types_pb2.GUARD_STAGE_OUTPUT: "output"}
_ACTIONS = {
    types_pb2.GUARD_ACTION_ALLOW: "allow",
    types_pb2.GUARD_ACTION_BLOCK: "block",
    types_pb2.GUARD_ACTION_REDACT: "redact",
    types_pb2.GUARD_ACTION_FLAG: "flag",
}
_MODES = {types_pb2.GUARD_MODE_ENFORCE: "enforce", types_pb2.GUARD_MODE_MONITOR: "monitor"}


def _verdict(verdict: types_pb2.GuardVerdict) -> dict[str, Any]:
    failed = {"error_type": verdict.error_type} if verdict.error_type else {}
    return {
        "guard": verdict.guard,
        "stage": _STAGES.get(verdict.stage, "unspecified"),
        "action": _ACTIONS.get(verdict.action, "unspecified"),
        "mode": _MODES.get(verdict.mode, "unspecified"),
        "policy_version": verdict.policy_version,
        # Where and what kind, never the text found (as on the gRPC side).
        "findings": [
            {"type": f.type, "start": f.start, "end": f.end, "score": f.score}
            for f in verdict.findings
        ],
        **failed,  # only on a guard that could not decide, as on the gRPC verdict
    }


def mesh_extension(
    request_id: str,
    route: types_pb2.RouteInfo,
    usage: types_pb2.Usage,
    verdicts: Iterable[types_pb2.GuardVerdict],
) -> dict[str, Any]:
    """The `mesh` object: route, cost, baseline cost and guard verdicts of one answer."""
    return {
        "request_id": request_id,
        "cost_usd": usage.cost_usd,
        "baseline_cost_usd": route.baseline_cost_usd,
        "route": {
            "node_id": route.node_id,
            "model": route.model,
            "provider": route.provider,
            "policy": route.policy,
            "reason": route.reason,
            "tier": tier_name(route.tier),
            "attempts": route.attempts,
            "cache_hit": route.cache_hit,
            "estimated_cost_usd": route.estimated_cost_usd,
            "candidates": [
                {
                    "node_id": c.node_id,
                    "model": c.model,
                    "score": c.score,
                    "estimated_cost_usd": c.estimated_cost_usd,
                    "chosen": c.chosen,
                    "rejected_reason": c.rejected_reason,
                }
                for c in route.candidates
            ],
        },
        "guard_verdicts": [_verdict(v) for v in verdicts],
    }


def route_headers(
    request_id: str, route: types_pb2.RouteInfo, usage: types_pb2.Usage
) -> dict[str, str]:
    """x-mesh-* headers of a finished answer."""
    return {
        "x-request-id": request_id,
        "x-mesh-node": route.node_id,
        "x-mesh-model": route.model,
        "x-mesh-policy": route.policy,
        "x-mesh-cost-usd": f"{usage.cost_usd:.10f}",
        "x-mesh-cache": "hit" if route.cache_hit else "miss",
    }


def stream_headers(ctx: RequestContext) -> dict[str, str]:
    """x-mesh-* headers of a stream, sent with its first event: the cost is not known yet (it
    is in the last event's `mesh` object). A cached answer names the node and model that
    first gave it, as a unary cache hit's RouteInfo does."""
    headers = {"x-request-id": ctx.request_id}
    hit = ctx.cache_hit
    if hit is not None:
        headers["x-mesh-node"] = hit.node_id
        headers["x-mesh-model"] = hit.model
        headers["x-mesh-cache"] = "hit"
        return headers
    decision, attempts = ctx.decision, ctx.attempts
    if decision is None or attempts is None:  # no route was taken (not reached in practice)
        return headers
    # The candidate that committed: the first in the decision's order that did not fail.
    committed = next((c for c in decision.ordered if c not in attempts.failures), None)
    if committed is not None:
        headers["x-mesh-node"] = committed.node_id
        headers["x-mesh-model"] = committed.model
    headers["x-mesh-policy"] = decision.policy
    headers["x-mesh-cache"] = "miss"
    return headers

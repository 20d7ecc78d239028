"""Input-guard stage: the policy's input chain over the conversation, before anything is routed.

Every turn is checked, the system prompt included (a secret there would otherwise reach an
external provider); which guard reads which roles, and so what may be rewritten, is the
policy's choice (`roles` per guard), never a skip written here.

Checking and applying are apart so the policy's `parallel_input` mode can run the check while
generation starts: `check` never touches the context's request, `apply` rewrites it (redaction)
or raises GuardBlocked once the verdict is known.
"""

from __future__ import annotations

from collections.abc import Sequence

from guards.audit import AuditLog
from guards.guarded_request import GuardedRequest, Segments, blocked_error
from guards.policy_store import PolicyStore
from guards.verdict import ChainResult, GuardOutcome
from mesh.router.pipeline.context import RequestContext
from mesh.telemetry.metrics import MeshMetrics
from mesh.v1 import types_pb2

_SYSTEM = types_pb2.ROLE_SYSTEM
_ROLE_NAMES = {
    types_pb2.ROLE_SYSTEM: "system",
    types_pb2.ROLE_USER: "user",
    types_pb2.ROLE_ASSISTANT: "assistant",
}


def _segments(ctx: RequestContext) -> Segments:
    messages = ctx.request.messages
    return Segments([m.content for m in messages], [_ROLE_NAMES[m.role] for m in messages])


class InputGuards:
    """Opens each request's guard snapshot and runs its input chain."""

    def __init__(
        self, store: PolicyStore | None, audit: AuditLog | None, metrics: MeshMetrics | None = None
    ) -> None:
        self.store = store
        self.audit = audit
        self.metrics = metrics

    def _count(self, outcomes: Sequence[GuardOutcome]) -> None:
        """Every verdict of the request (input, output, a stream's window) on the
        `mesh.guard.verdicts` counter: what a security team graphs and alerts on."""
        assert self.metrics is not None
        for o in outcomes:
            self.metrics.count_guard_verdict(
                guard=o.guard,
                stage=o.stage.value,
                action=o.verdict.action.value,
                mode=o.mode.value,
                error_type=o.error_type,
            )

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def policy_version(self) -> str:
        return self.store.version if self.store is not None else ""

    def open(self, ctx: RequestContext) -> GuardedRequest | None:
        """Pin the request to the policy active now (every later verdict uses the same one)."""
        if self.store is None:
            return None
        system = "\n".join(m.content for m in ctx.request.messages if m.role == _SYSTEM)
        count = self._count if self.metrics is not None else None
        ctx.guards = GuardedRequest(
            self.store, ctx.tenant, ctx.request_id, system, self.audit, on_outcomes=count
        )
        return ctx.guards

    @staticmethod
    def parallel(ctx: RequestContext) -> bool:
        """Whether the policy lets generation start before the input verdict."""
        return ctx.guards is not None and ctx.guards.policy.policy.parallel_input

    @staticmethod
    async def check(ctx: RequestContext) -> ChainResult | None:
        """The input verdict (audited); the request is left as it is."""
        if ctx.guards is None:
            return None
        return await ctx.guards.check_input(_segments(ctx))

    @staticmethod
    def apply(ctx: RequestContext, result: ChainResult | None) -> bool:
        """Act on the verdict: raise on a block, redact the turns; True when rewritten."""
        ctx.input_result = result
        if result is None:
            return False
        if result.blocked:
            raise blocked_error(result, "request")
        if not result.redactions:
            return False
        rewritten = type(ctx.request)()
        rewritten.CopyFrom(ctx.request)  # type: ignore[arg-type]
        for message, text in zip(
            rewritten.messages, _segments(ctx).rewrite(result.redactions), strict=True
        ):
            message.content = text
        ctx.request = rewritten
        return True

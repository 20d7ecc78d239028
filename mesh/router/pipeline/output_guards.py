"""Output-guard stage: the whole reply of a unary call, or a hold-back window over a stream.

The verdict is returned, not raised: settle must still charge a blocked answer (the tokens were
generated) and must not cache it, so the pipeline raises the block after settling.
"""

from __future__ import annotations

from collections.abc import Sequence

from guards.proto_convert import verdicts_to_proto
from guards.streaming import StreamGuard
from guards.verdict import ChainResult, GuardOutcome
from mesh.router.pipeline.context import RequestContext
from mesh.v1 import types_pb2


class OutputGuards:
    """Runs the request's output chain (its policy snapshot was pinned at the edge)."""

    @staticmethod
    async def check(ctx: RequestContext, text: str) -> ChainResult | None:
        if ctx.guards is None:
            return None
        return await ctx.guards.check_output(text)

    @staticmethod
    def window(ctx: RequestContext) -> StreamGuard | None:
        return ctx.guards.stream_guard() if ctx.guards is not None else None

    @staticmethod
    async def audit_stream(ctx: RequestContext, window: StreamGuard) -> None:
        """Audit a guarded stream's verdicts once it ended (the window kept them)."""
        if ctx.guards is not None:
            await ctx.guards.record(window.outcomes, window.released_text)

    @staticmethod
    def verdicts(
        ctx: RequestContext, output: Sequence[GuardOutcome] = ()
    ) -> list[types_pb2.GuardVerdict]:
        """Every verdict of the request (input, then output) for the response message."""
        if ctx.guards is None:
            return []
        inputs = ctx.input_result.outcomes if ctx.input_result is not None else ()
        return verdicts_to_proto((*inputs, *output), ctx.guards.version)

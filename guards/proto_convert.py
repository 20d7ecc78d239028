"""Verdicts to mesh.v1 messages, stamped with the policy version that produced them."""

from __future__ import annotations

from collections.abc import Iterable

from guards.verdict import Action, GuardOutcome, Mode, Stage
from mesh.v1 import types_pb2

ACTION_TO_PROTO = {
    Action.ALLOW: types_pb2.GUARD_ACTION_ALLOW,
    Action.BLOCK: types_pb2.GUARD_ACTION_BLOCK,
    Action.REDACT: types_pb2.GUARD_ACTION_REDACT,
    Action.FLAG: types_pb2.GUARD_ACTION_FLAG,
}
STAGE_TO_PROTO = {
    Stage.INPUT: types_pb2.GUARD_STAGE_INPUT,
    Stage.OUTPUT: types_pb2.GUARD_STAGE_OUTPUT,
}
MODE_TO_PROTO = {
    Mode.ENFORCE: types_pb2.GUARD_MODE_ENFORCE,
    Mode.MONITOR: types_pb2.GUARD_MODE_MONITOR,
}
STAGE_FROM_PROTO = {v: k for k, v in STAGE_TO_PROTO.items()}


def verdict_to_proto(outcome: GuardOutcome, policy_version: str) -> types_pb2.GuardVerdict:
    return types_pb2.GuardVerdict(
        guard=outcome.guard,
        stage=STAGE_TO_PROTO[outcome.stage],
        action=ACTION_TO_PROTO[outcome.verdict.action],
        mode=MODE_TO_PROTO[outcome.mode],
        policy_version=policy_version,
        findings=[
            types_pb2.GuardFinding(type=f.type, start=f.start, end=f.end, score=f.score)
            for f in outcome.verdict.findings
        ],
        error_type=outcome.error_type,
    )


def verdicts_to_proto(
    outcomes: Iterable[GuardOutcome], policy_version: str
) -> list[types_pb2.GuardVerdict]:
    return [verdict_to_proto(o, policy_version) for o in outcomes]

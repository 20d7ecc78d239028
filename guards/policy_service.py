"""mesh.v1.PolicyService: read, apply (or dry-run), evaluate and audit guard policies.

Admin-only: every call first passes `authorize(context)`, which the router supplies (its auth
knows the keys: mesh/router/admin_auth.py accepts the admin key or an API key with
`admin: true`) and which names the caller. `admin_key_authorizer` is a ready one for a fixed
key from metadata. Every ApplyPolicy, refused ones included, is written to the audit log.
"""

from __future__ import annotations

import datetime as dt
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from google.protobuf import timestamp_pb2

from guards.audit import AuditLog, Decision, DecisionQuery, PolicyChange, cursor_of
from guards.errors import AdminKeyMissing, AdminKeyRejected, InvalidPolicy
from guards.hooks import InputCheck, OutputFinalCheck
from guards.policy_store import PolicyStore
from guards.proto_convert import ACTION_TO_PROTO, STAGE_FROM_PROTO, verdicts_to_proto
from guards.verdict import Action, GuardOutcome, Mode, Stage, Verdict
from mesh.config import DEFAULT_TENANT
from mesh.contract.errors import FieldViolation, InvalidRequest, MeshError
from mesh.contract.status import unary_error_boundary
from mesh.v1 import policy_pb2, policy_pb2_grpc

log = logging.getLogger(__name__)

# grpc ships no type information here, so the context is typed loosely.
Context: TypeAlias = Any
ADMIN_KEY_HEADER = "x-admin-key"
ADMIN_KEY_CALLER = "admin-key"
CALLER_METADATA = "caller"  # a refusal's metadata key naming the refused caller, for the audit


@dataclass(frozen=True)
class Caller:
    """Who an authorizer let in, as the audit log names them: "admin-key", or "api-key:NAME"
    with the key's tenant. Never the key."""

    name: str
    tenant: str = ""


# Raises a MeshError to refuse; returns the caller (None: allowed, not identified).
Authorize = Callable[[Context], Awaitable[Caller | None] | Caller | None]


def admin_key_authorizer(admin_key: str) -> Authorize:
    """Accept `x-admin-key: KEY` or `authorization: Bearer KEY` metadata equal to admin_key."""

    def authorize(context: Context) -> Caller:
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        given = metadata.get(ADMIN_KEY_HEADER)
        bearer = metadata.get("authorization", "")
        if not given and bearer.lower().startswith("bearer "):
            given = bearer[7:]
        if not given:
            raise AdminKeyMissing("this call needs an admin key (x-admin-key metadata)")
        if not hmac.compare_digest(str(given).encode(), admin_key.encode()):
            raise AdminKeyRejected("the key given is not an admin key")
        return Caller(ADMIN_KEY_CALLER)

    return authorize


def _timestamp(value: Any) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Serves the store's policy and the audit log."""

    def __init__(
        self, store: PolicyStore, authorize: Authorize, audit: AuditLog | None = None
    ) -> None:
        self.store = store
        self.authorize = authorize
        self.audit = audit

    async def _check(self, context: Context) -> Caller | None:
        result = self.authorize(context)
        if inspect.isawaitable(result):
            return await result
        return result

    @unary_error_boundary
    async def GetPolicy(
        self, request: policy_pb2.GetPolicyRequest, context: Context
    ) -> policy_pb2.GetPolicyResponse:
        await self._check(context)
        active = self.store.active
        return policy_pb2.GetPolicyResponse(
            version=active.version,
            policy_yaml=active.yaml_text,
            applied_at=_timestamp(active.applied_at),
            source=active.source,
        )

    @unary_error_boundary
    async def ApplyPolicy(
        self, request: policy_pb2.ApplyPolicyRequest, context: Context
    ) -> policy_pb2.ApplyPolicyResponse:
        dry_run = request.dry_run
        before = self.store.version
        try:
            caller = await self._check(context)
        except MeshError as err:  # an authorizer may name the caller it refused
            actor = err.metadata.get(CALLER_METADATA, "")
            await self._audit(PolicyChange(actor, dry_run, "denied", before, reason=err.reason))
            raise
        who = caller or Caller("")
        try:
            loaded, previous = await self.store.apply_async(
                request.policy_yaml, dry_run=dry_run, source="api"
            )
        except Exception as err:
            reason = err.message if isinstance(err, InvalidPolicy) else type(err).__name__
            outcome = "invalid" if isinstance(err, InvalidPolicy) else "failed"
            await self._audit(
                PolicyChange(who.name, dry_run, outcome, before, tenant=who.tenant, reason=reason)
            )
            raise
        await self._audit(
            PolicyChange(
                who.name,
                dry_run,
                "validated" if dry_run else "applied",
                previous,
                loaded.version,
                tenant=who.tenant,
            )
        )
        return policy_pb2.ApplyPolicyResponse(
            version=loaded.version, applied=not dry_run, previous_version=previous
        )

    async def _audit(self, change: PolicyChange) -> None:
        """Record an ApplyPolicy call; a failing audit store is logged, never fails the call
        (the change itself is in the log line)."""
        if self.audit is None:
            log.info("policy change (no audit log configured): %s", change)
            return
        try:
            await self.audit.record_policy_change(change)
        except Exception:
            log.exception("could not audit policy change: %s", change)

    @unary_error_boundary
    async def EvaluateGuards(
        self, request: policy_pb2.EvaluateGuardsRequest, context: Context
    ) -> policy_pb2.EvaluateGuardsResponse:
        await self._check(context)
        stage = STAGE_FROM_PROTO.get(request.stage)
        if stage is None:
            raise InvalidRequest(
                "stage must be GUARD_STAGE_INPUT or GUARD_STAGE_OUTPUT",
                violations=[FieldViolation("stage", "must be INPUT or OUTPUT")],
            )
        policy = (
            await self.store.load_async(request.policy_yaml, "request")
            if request.policy_yaml
            else self.store.active
        )
        chain = self.store.chain(stage, request.tenant or DEFAULT_TENANT, policy)
        check = (
            InputCheck(request.text, request.tenant)
            if stage is Stage.INPUT
            else OutputFinalCheck(request.text, request.tenant)
        )
        result = await chain.run(check)
        return policy_pb2.EvaluateGuardsResponse(
            verdicts=verdicts_to_proto(result.outcomes, result.policy_version),
            action=ACTION_TO_PROTO[result.action],
            redacted_text=result.text,
            policy_version=result.policy_version,
        )

    @unary_error_boundary
    async def ListGuardDecisions(
        self, request: policy_pb2.ListGuardDecisionsRequest, context: Context
    ) -> policy_pb2.ListGuardDecisionsResponse:
        await self._check(context)
        if self.audit is None:
            raise MeshError("no audit log is configured on this server", reason="AUDIT_DISABLED")
        query = DecisionQuery(
            tenant=request.tenant,
            guard=request.guard,
            since=_since(request),
            page_size=_page_size(request.page_size),
            page_token=_page_token(request.page_token),
        )
        decisions, token = await self.audit.query(query)
        return policy_pb2.ListGuardDecisionsResponse(
            decisions=[_decision_proto(d) for d in decisions], next_page_token=token
        )


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidRequest(
            "page_size must be >= 0", violations=[FieldViolation("page_size", "must be >= 0")]
        )
    return page_size


def _page_token(token: str) -> str:
    try:
        cursor_of(token)
    except ValueError:
        raise InvalidRequest(
            "page_token is not a token this server issued",
            violations=[FieldViolation("page_token", "not a token from a previous response")],
        ) from None
    return token


def _since(request: policy_pb2.ListGuardDecisionsRequest) -> dt.datetime | None:
    """The `since` filter; a Timestamp outside 0001-01-01..9999-12-31 (or with nanos outside
    0..999,999,999) has no datetime, which is the caller's mistake, not the server's."""
    if not request.HasField("since"):
        return None
    try:
        return request.since.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            "since is not a valid timestamp",
            violations=[FieldViolation("since", "must lie within 0001-01-01 and 9999-12-31 UTC")],
        ) from None


def _decision_proto(d: Decision) -> policy_pb2.GuardDecision:
    outcome = GuardOutcome(
        d.guard,
        Stage(d.stage),
        Mode(d.mode),
        Verdict(Action(d.action), tuple(d.findings)),
        error_type=d.error_type,
    )
    verdict = verdicts_to_proto([outcome], d.policy_version)[0]
    return policy_pb2.GuardDecision(
        decision_id=d.id,
        decide_time=_timestamp(d.decided_at),
        request_id=d.request_id,
        tenant=d.tenant,
        verdict=verdict,
        content_sha256=d.content_sha256,
    )

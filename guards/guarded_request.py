"""Guard steps for one request, independent of gRPC: input check, output check, audit."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from guards.audit import AuditLog
from guards.chain import GuardChain
from guards.errors import GuardBlocked
from guards.hooks import InputCheck, OutputFinalCheck, Turn
from guards.policy_loader import LoadedPolicy
from guards.policy_store import PolicyStore
from guards.streaming import StreamGuard
from guards.verdict import Action, ChainResult, Finding, GuardOutcome, Stage, mask_spans

log = logging.getLogger(__name__)

SEPARATOR = "\n\n"


def blocked_error(result: ChainResult, stage: str) -> GuardBlocked:
    """The error for a blocked request or response: names the guards, never the finding."""
    guards = [o.guard for o in result.outcomes if o.enforced and o.verdict.action is Action.BLOCK]
    return GuardBlocked(
        f"the {stage} was blocked by guard policy",
        metadata={
            "guards": ",".join(guards),
            "stage": stage,
            "policy_version": result.policy_version,
        },
    )


@dataclass
class Segments:
    """The conversation's turns joined into one text, with each turn's role and offset, so
    guards can read the roles they are scoped to and redactions found on the joined text can be
    written back turn by turn."""

    texts: list[str]
    roles: list[str] = field(default_factory=list)  # per text; empty: untyped

    @property
    def joined(self) -> str:
        return SEPARATOR.join(self.texts)

    @property
    def turns(self) -> tuple[Turn, ...]:
        out, offset = [], 0
        for text, role in zip(self.texts, self.roles, strict=False):
            out.append(Turn(role, offset, offset + len(text)))
            offset += len(text) + len(SEPARATOR)
        return tuple(out)

    def rewrite(self, redactions: Sequence[Finding]) -> list[str]:
        out, offset = [], 0
        for text in self.texts:
            local = [
                Finding(f.type, max(0, f.start - offset), min(len(text), f.end - offset), f.score)
                for f in redactions
                if f.start < offset + len(text) and f.end > offset
            ]
            out.append(mask_spans(text, local))
            offset += len(text) + len(SEPARATOR)
        return out


class GuardedRequest:
    """One request's view of the guards, pinned to the policy snapshot taken at its start."""

    def __init__(
        self,
        store: PolicyStore,
        tenant: str,
        request_id: str,
        system_prompt: str,
        audit: AuditLog | None = None,
        on_outcomes: Callable[[Sequence[GuardOutcome]], None] | None = None,
    ) -> None:
        """`on_outcomes` sees every verdict once, as it is recorded (the router counts them
        for its metrics); a failure there is logged and never fails the request."""
        self.store = store
        self.policy: LoadedPolicy = store.active
        self.tenant = tenant
        self.request_id = request_id
        self.system_prompt = system_prompt
        self.audit = audit
        self.on_outcomes = on_outcomes

    @property
    def version(self) -> str:
        return self.policy.version

    def chain(self, stage: Stage) -> GuardChain:
        return self.store.chain(stage, self.tenant, self.policy)

    async def check_input(self, text: str | Segments) -> ChainResult:
        """The input chain on a plain text, or on a conversation's turns (each guard then
        reads only the roles its spec names)."""
        if isinstance(text, Segments):
            joined, turns = text.joined, text.turns
        else:
            joined, turns = text, ()
        result = await self.chain(Stage.INPUT).run(
            InputCheck(joined, self.tenant, self.request_id, self.system_prompt, turns)
        )
        await self.record(result.outcomes, joined)
        return result

    async def check_output(self, text: str) -> ChainResult:
        result = await self.chain(Stage.OUTPUT).run(
            OutputFinalCheck(text, self.tenant, self.request_id, self.system_prompt)
        )
        await self.record(result.outcomes, text)
        return result

    def stream_guard(self) -> StreamGuard:
        return StreamGuard(
            self.chain(Stage.OUTPUT),
            self.policy.policy.stream.hold_back_chars,
            tenant=self.tenant,
            request_id=self.request_id,
            system_prompt=self.system_prompt,
        )

    async def record(self, outcomes: Sequence[GuardOutcome], text: str) -> None:
        """Count every outcome and audit the non-allow ones; a failing audit store or counter is
        logged, never fails the request."""
        if self.on_outcomes is not None:
            try:
                self.on_outcomes(outcomes)
            except Exception:
                log.exception("counting guard verdicts failed for request %s", self.request_id)
        if self.audit is None:
            return
        try:
            await self.audit.record(
                outcomes,
                text=text,
                tenant=self.tenant,
                request_id=self.request_id,
                policy_version=self.version,
                store_content=self.policy.policy.store_content,
            )
        except Exception:
            log.exception("audit write failed for request %s", self.request_id)

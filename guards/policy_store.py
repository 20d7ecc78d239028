"""Holds the active policy: atomic swap, hot reload from a file, apply through the API.

Readers take `store.active` once per request and use that snapshot throughout, so a swap in
the middle of a request never mixes two policies; a broken new policy never replaces a good one.
Every load after the first runs in a worker thread (`apply_async`, `load_async`), never on the
event loop, and the file watcher outlives any error a file can cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.trace import Tracer

from guards.chain import GuardChain
from guards.errors import InvalidPolicy
from guards.policy_loader import (
    DEFAULT_RULES,
    LoadedPolicy,
    LoadRules,
    load_policy,
    read_policy_file,
)
from guards.verdict import Stage
from mesh.config import DEFAULT_TENANT, GuardSettings

if TYPE_CHECKING:
    from guards.audit import AuditLog

log = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "policies" / "default.yaml"


class PolicyStore:
    """The one place the active policy lives; swapped by reference, never mutated."""

    def __init__(
        self,
        initial: LoadedPolicy,
        *,
        tracer: Tracer | None = None,
        rules: LoadRules = DEFAULT_RULES,
    ) -> None:
        """`rules`: what later policies may be and load (the operator's, from mesh.yaml);
        `initial` was loaded by the caller, under the same rules."""
        self._active = initial
        self.tracer = tracer  # for guard spans; None: the process's global tracer provider
        self.rules = rules
        self._chains: dict[tuple[str, str, Stage], GuardChain] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_audit: AuditLog | None = None
        self._last_file_refusal: tuple[str, str] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_file(
        cls,
        path: str | Path = DEFAULT_POLICY_PATH,
        *,
        tracer: Tracer | None = None,
        rules: LoadRules = DEFAULT_RULES,
    ) -> PolicyStore:
        p = Path(path)
        return cls(
            load_policy(read_policy_file(p, rules), str(p), rules), tracer=tracer, rules=rules
        )

    @classmethod
    def from_settings(cls, settings: GuardSettings, *, tracer: Tracer | None = None) -> PolicyStore:
        """The router's store as `router.guards` configures it: its policy file (else the
        shipped default) under its validator allow-list."""
        return cls.from_file(
            settings.policy_file or DEFAULT_POLICY_PATH,
            tracer=tracer,
            rules=LoadRules.of(settings),
        )

    def load(self, yaml_text: str, source: str) -> LoadedPolicy:
        """Validate and build a policy under this store's rules without installing it."""
        return load_policy(yaml_text, source, self.rules)

    async def load_async(self, yaml_text: str, source: str) -> LoadedPolicy:
        """`load` in a worker thread (EvaluateGuards with a candidate policy)."""
        return await asyncio.to_thread(self.load, yaml_text, source)

    @property
    def active(self) -> LoadedPolicy:
        return self._active

    @property
    def version(self) -> str:
        return self._active.version

    def chain(
        self, stage: Stage, tenant: str = DEFAULT_TENANT, policy: LoadedPolicy | None = None
    ) -> GuardChain:
        """The cached chain for a stage and tenant of a snapshot (default: the active one)."""
        snapshot = policy or self._active
        key = (snapshot.version, tenant if tenant in snapshot.policy.tenants else "", stage)
        chain = self._chains.get(key)
        if chain is None:
            chain = GuardChain(
                snapshot.guards_for(key[1]),
                stage,
                snapshot.version,
                policy_id=snapshot.policy_id,
                tracer=self.tracer,
            )
            if len(self._chains) > 256:  # old versions' chains; cheap to rebuild
                self._chains.clear()
            self._chains[key] = chain
        return chain

    def apply(
        self, yaml_text: str, *, dry_run: bool = False, source: str = "api"
    ) -> tuple[LoadedPolicy, str]:
        """Validate (and unless dry_run, install) a policy; returns it and the previous version.

        Raises InvalidPolicy and leaves the active policy in force when the text is broken.
        """
        loaded = self.load(yaml_text, source)
        replaced = self._active
        previous = replaced.version
        if not dry_run:
            self._active = loaded  # one reference assignment: atomic for every reader
            log.info("policy %s installed from %s (was %s)", loaded.version, source, previous)
            self._chains.clear()  # they hold the replaced policy's guards
            close_guards(replaced)
        return loaded, previous

    async def apply_async(
        self, yaml_text: str, *, dry_run: bool = False, source: str = "api"
    ) -> tuple[LoadedPolicy, str]:
        """`apply` off the event loop (building guards may import validators or load weights)."""
        async with self._lock:
            return await asyncio.to_thread(self.apply, yaml_text, dry_run=dry_run, source=source)

    def watch(
        self, path: str | Path, interval_s: float = 1.0, *, audit: AuditLog | None = None
    ) -> asyncio.Task[None]:
        """Poll `path`'s mtime; a changed file is applied, a broken one logged and ignored.

        Broken includes an empty file (what a non-atomic save leaves for a moment; a policy
        without guards says `guards: []`) and one that is not UTF-8. Nothing a file holds
        stops the watching. With `audit`, each change the file makes (or that is refused) is
        a policy-change row beside the ApplyPolicy calls, actor `file:PATH`, source `file`:
        a security team sees every way the active policy changed in one place.
        """
        self._watch_audit = audit
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.create_task(
                # The file as it is now: a change made before the task first runs still counts.
                self._watch(Path(path), interval_s, _mtime(Path(path))),
                name="policy-watch",
            )
        return self._watch_task

    def close(self) -> None:
        """Release what the active policy's guards hold outside this process (the validator
        sandbox's workers exit when no policy uses them). A guard used afterwards takes it back."""
        self._chains.clear()
        close_guards(self._active)

    async def stop_watching(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None

    async def _watch(self, path: Path, interval_s: float, last: float | None) -> None:
        while True:
            await asyncio.sleep(interval_s)
            current = _mtime(path)
            if current == last:
                continue
            last = current
            await self._reload(path)

    async def _reload(self, path: Path) -> None:
        """Apply the file; whatever goes wrong is logged and the active policy kept, so the
        next good version of the file is still applied (a RecursionError once ended the
        watcher for good)."""
        before = self.version
        try:
            text = await asyncio.to_thread(read_policy_file, path, self.rules)
            if not text.strip():  # an editor's non-atomic save: never "no guards at all"
                raise InvalidPolicy.at(str(path), None, "", "the file is empty")
            loaded, _ = await self.apply_async(text, source=str(path))
        except InvalidPolicy as err:
            log.error("policy file change rejected, keeping %s: %s", self.version, err.message)
            await self._audit_file(path, "invalid", before, reason=err.message)
        except OSError as err:
            log.error("policy file unreadable, keeping %s: %s", self.version, err)
            why = err.strerror or type(err).__name__
            await self._audit_file(path, "failed", before, reason=f"unreadable: {why}")
        except Exception as err:  # a validator's constructor, a bug: never the end of watching
            log.error(
                "policy file change failed (%s), keeping %s", type(err).__name__, self.version
            )
            await self._audit_file(path, "failed", before, reason=type(err).__name__)
        else:
            self._last_file_refusal = None  # the file is good again: a new refusal is news
            if loaded.version != before:  # a save that changed nothing is no change
                await self._audit_file(path, "applied", before, loaded.version)

    async def _audit_file(
        self, path: Path, outcome: str, before: str, after: str = "", reason: str = ""
    ) -> None:
        """One policy-change row for what the file did; never raises (the watcher goes on).

        A refusal the same as the last one (a broken file saved again and again) is one row.
        """
        audit = self._watch_audit
        if audit is None:
            return
        refusal = (outcome, reason) if outcome != "applied" else None
        if refusal is not None and refusal == self._last_file_refusal:
            return
        self._last_file_refusal = refusal
        from guards.audit import PolicyChange

        change = PolicyChange(
            actor=f"file:{path}",
            dry_run=False,
            outcome=outcome,
            version_before=before,
            version_after=after,
            source="file",
            reason=reason,
        )
        try:
            await audit.record_policy_change(change)
        except Exception:
            log.exception("could not audit the policy file change (%s)", outcome)


def close_guards(policy: LoadedPolicy) -> None:
    """Close the guards of a policy that is no longer in force that hold something outside this
    process (guardrails-ai validators: their sandbox workers). A request still running under
    it is not broken: such a guard takes its resources back when used. Never raises."""
    seen: set[int] = set()
    for guards in policy.guards_by_tenant.values():
        for built in guards:
            close = getattr(built.guard, "close", None)
            if close is None or id(built.guard) in seen:
                continue
            seen.add(id(built.guard))
            try:
                close()
            except Exception:
                log.exception("could not close guard %s", built.spec.name)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None
